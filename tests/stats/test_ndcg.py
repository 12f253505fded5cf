"""Relevance, nDCG@p, the random-order baseline, Kendall tau and Spearman rho."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import ndcg_score

from reports import stats as S

from ._sim import random_permutation_ranks, ranking_study


def test_relevance_n10():
    np.testing.assert_allclose(S.relevance_from_ranks(np.arange(1, 11)), np.arange(5.5, 0.9, -0.5))


def test_hand_n4_swap_first_two():
    # N = 4: relevance (N + 1 - r)/2 + 0.5 of reader ranks 1..4 = 2.5, 2.0, 1.5, 1.0;
    # exp gains g1 = 2^2.5 - 1, g2 = 3, 2^1.5 - 1, 1.
    # The method puts the reader's #2 first: DCG@2 = g2 + g1/log2(3), IDCG@2 = g1 + g2/log2(3).
    g1, g2 = 2**2.5 - 1, 3.0
    expected = (g2 + g1 / np.log2(3)) / (g1 + g2 / np.log2(3))
    assert expected == pytest.approx(0.90664, abs=1e-5)
    assert S.ndcg_at([2, 1, 3, 4], [1, 2, 3, 4], 2) == pytest.approx(expected)
    assert S.ndcg_at([2, 1, 3, 4], [1, 2, 3, 4], 2, gain="linear") == pytest.approx(
        (2.0 + 2.5 / np.log2(3)) / (2.5 + 2.0 / np.log2(3))
    )
    assert S.ndcg_at([2, 1, 3, 4], [1, 2, 3, 4], 4) > expected  # the lower positions agree


@pytest.mark.parametrize("p", [3, 4, 7, 10])
@pytest.mark.parametrize("gain", ["exp", "linear"])
def test_matches_sklearn(p, gain):
    reference = random_permutation_ranks(25, 10, seed=1)
    method = random_permutation_ranks(25, 10, seed=2)
    rel = S.relevance_from_ranks(reference)
    y_true = 2**rel - 1 if gain == "exp" else rel
    ours = S.ndcg_at(method, reference, p, gain=gain)
    expected = [ndcg_score(y_true[i : i + 1], -method[i : i + 1].astype(float), k=p) for i in range(25)]
    np.testing.assert_allclose(ours, expected)


def test_method_given_as_order_scores_or_distances():
    reference = np.array([3, 1, 2, 5, 4])
    ranks = np.array([2, 1, 4, 3, 5])
    order = np.argsort(ranks)
    distances = np.array([0.4, 0.1, 0.8, 0.5, 0.9])  # same order as ranks
    expected = S.ndcg_at(ranks, reference, 3)
    assert S.ndcg_at(order, reference, 3, method_is="order") == pytest.approx(expected)
    assert S.ndcg_at(distances, reference, 3, method_is="distances") == pytest.approx(expected)
    assert S.ndcg_at(-distances, reference, 3, method_is="scores") == pytest.approx(expected)
    with pytest.raises(ValueError):
        S.ndcg_at(ranks, reference, 3, method_is="votes")


def test_perfect_and_reversed_orders():
    reference = random_permutation_ranks(5, 10, seed=3)
    np.testing.assert_allclose(S.ndcg_at(reference, reference, 10), 1.0)
    reversed_ = 11 - reference
    assert (S.ndcg_at(reversed_, reference, 10) < S.expected_random_ndcg(10, 10)).all()


def test_random_baseline_is_about_0_70():
    assert S.expected_random_ndcg(10, 10) == pytest.approx(0.70, abs=0.005)


@pytest.mark.parametrize(("n", "p"), [(5, 2), (5, 5), (6, 3)])
def test_random_baseline_exact_by_enumeration(n, p):
    reference = np.arange(1, n + 1)
    values = [S.ndcg_at(np.array(perm) + 1, reference, p) for perm in itertools.permutations(range(n))]
    assert S.expected_random_ndcg(n, p) == pytest.approx(np.mean(values), rel=1e-12)


@pytest.mark.parametrize("p", [3, 10])
def test_random_baseline_monte_carlo(p):
    reference = np.tile(np.arange(1, 11), (20000, 1))
    values = S.ndcg_at(random_permutation_ranks(20000, 10, seed=4), reference, p)
    se = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - S.expected_random_ndcg(10, p)) < 4 * se


def test_kendall_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(5)
    a = rng.integers(1, 5, size=(20, 8)).astype(float)
    b = rng.integers(1, 5, size=(20, 8)).astype(float)
    tau, rho = S.kendall_tau(a, b), S.spearman_rho(a, b)
    for i in range(20):
        assert tau[i] == pytest.approx(sps.kendalltau(a[i], b[i]).statistic)
        assert rho[i] == pytest.approx(sps.spearmanr(a[i], b[i]).statistic)
    assert S.kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert S.spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_ranking_summary():
    readers, latent = ranking_study(30, 10, 3, seed=6)
    truth = readers[..., 0]
    methods = {"oracle": truth, "random": random_permutation_ranks(30, 10, seed=7)}
    report = S.ranking_summary(readers, methods, p=(3, 10))
    assert report["ground_truth"] == "R1"
    assert report["kind"] == {"oracle": "method", "random": "method", "R2": "reader", "R3": "reader"}
    np.testing.assert_allclose(report["per_case"]["oracle"]["ndcg@10"], 1.0)
    np.testing.assert_allclose(report["per_case"]["R2"]["ndcg@3"], S.ndcg_at(readers[..., 1], truth, 3))
    np.testing.assert_allclose(
        report["per_case"]["R3"]["kendall_tau"],
        [sps.kendalltau(readers[c, :, 2], truth[c]).statistic for c in range(30)],
    )
    assert report["random"]["ndcg@10"] == pytest.approx(S.expected_random_ndcg(10, 10))
    low, high = report["inter_rater_band"]["ndcg@10"]
    assert low == min(report["mean"]["R2"]["ndcg@10"], report["mean"]["R3"]["ndcg@10"])
    assert high == max(report["mean"]["R2"]["ndcg@10"], report["mean"]["R3"]["ndcg@10"])
    assert report["mean"]["random"]["ndcg@10"] < low  # readers agree better than chance
    assert report["mean"]["R2"]["ndcg@3"] < report["mean"]["R2"]["ndcg@10"]


def test_ranking_summary_with_a_single_reader_has_no_band():
    import numpy as np

    from reports.stats import ranking_summary

    rng = np.random.default_rng(0)
    readers = np.stack(
        [np.stack([rng.permutation(5) + 1 for _ in range(4)])], axis=-1
    )  # 4 cases, 5 candidates, 1 reader
    out = ranking_summary(readers, {"model": readers[..., 0]}, p=(3,))
    assert out["inter_rater_band"] == {}
    assert out["mean"]["model"]["ndcg@3"] == 1.0
