"""Fleiss' kappa: statsmodels wrapper, per-case sufficient statistics, README identity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from reports import stats as S

from ._sim import choose_k_study


def _statsmodels(items, n_cat=2):
    return sm_fleiss(aggregate_raters(items, n_cat=n_cat)[0], method="fleiss")


def _mean_pairwise_agreement_loop(items):
    r = items.shape[1]
    return np.mean([np.mean(items[:, i] == items[:, j]) for i, j in itertools.combinations(range(r), 2)])


def test_hand_computed_choose_2_of_4(hand_study):
    # 12 items, 3 readers. Per-item agreement P_i = [n1(n1-1) + n0(n0-1)] / 6:
    #   n1 in {0, 3} -> 1, n1 in {1, 2} -> 1/3.
    #   case 1: 1 + 1/3 + 1/3 + 1 = 8/3; case 2: 1 + 3 * 1/3 = 2; case 3: 4 * 1 = 4.
    #   P_bar = (26/3) / 12 = 13/18; p_selected = 18/36 = 1/2 -> P_e = 1/2.
    #   kappa = (13/18 - 1/2) / (1/2) = 4/9.
    selections, _ = hand_study
    assert S.fleiss_kappa(selections.reshape(-1, 3)) == pytest.approx(4 / 9)
    stats = S.agreement_stats(selections)
    assert S.fleiss_kappa_from_stats(stats) == pytest.approx(4 / 9)
    assert S.mean_pairwise_agreement(stats) == pytest.approx(13 / 18)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_cat", [2, 3])
def test_from_stats_matches_statsmodels(seed, n_cat):
    rng = np.random.default_rng(seed)
    ratings = rng.integers(0, n_cat, size=(15, 6, 4))
    ratings[:5] = ratings[:5, :, :1]  # some cases with full agreement
    expected = _statsmodels(ratings.reshape(-1, 4), n_cat)
    assert S.fleiss_kappa(ratings.reshape(-1, 4), n_cat=n_cat) == pytest.approx(expected)
    assert S.fleiss_kappa_from_stats(S.agreement_stats(ratings, n_cat=n_cat)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_choose_5_of_10_identity(seed):
    """Every reader selects exactly half -> P_e = 1/2 -> kappa = 2 * mean pairwise agreement - 1."""
    selections, _, _ = choose_k_study(30, 10, 5, 5, seed=seed, noise=1.5)
    items = selections.reshape(-1, 5).astype(int)
    assert _statsmodels(items) == pytest.approx(2 * _mean_pairwise_agreement_loop(items) - 1)
    assert S.fleiss_kappa_from_stats(S.agreement_stats(selections)) == pytest.approx(
        2 * _mean_pairwise_agreement_loop(items) - 1
    )


def test_identity_needs_exactly_half():
    """Control: with unequal selection counts the identity does not hold (the test above can fail)."""
    selections, _, _ = choose_k_study(30, 10, 5, 3, seed=0, noise=1.5)
    items = selections.reshape(-1, 5).astype(int)
    assert abs(_statsmodels(items) - (2 * _mean_pairwise_agreement_loop(items) - 1)) > 0.05


def test_integer_case_weights_equal_replicated_cases():
    selections, _, _ = choose_k_study(12, 10, 4, 5, seed=3)
    weights = np.array([0, 1, 2, 3, 0, 1, 1, 4, 0, 2, 1, 1])
    replicated = np.repeat(selections, weights, axis=0).reshape(-1, 4).astype(int)
    stats = S.agreement_stats(selections)
    assert S.fleiss_kappa_from_stats(stats, weights) == pytest.approx(_statsmodels(replicated))


def test_reader_weights_zero_drops_readers():
    selections, _, _ = choose_k_study(20, 10, 5, 5, seed=4)
    stats = S.agreement_stats(selections)
    kept = selections[..., [0, 2, 3]].reshape(-1, 3).astype(int)
    value = S.fleiss_kappa_from_stats(stats, None, np.array([1, 0, 1, 1, 0]))
    assert value == pytest.approx(_statsmodels(kept))


def test_reader_drawn_twice_is_not_paired_with_itself():
    selections, _, _ = choose_k_study(20, 10, 3, 5, seed=5)
    items = selections.reshape(-1, 3)
    v = np.array([2.0, 1.0, 1.0])
    agree = {(i, j): np.mean(items[:, i] == items[:, j]) for i in range(3) for j in range(3) if i != j}
    p_bar = sum(v[i] * v[j] * a for (i, j), a in agree.items()) / sum(v[i] * v[j] for i, j in agree)
    p_sel = (v * items.mean(0)).sum() / v.sum()
    p_e = p_sel**2 + (1 - p_sel) ** 2
    value = S.fleiss_kappa_from_stats(S.agreement_stats(selections), None, v)
    assert value == pytest.approx((p_bar - p_e) / (1 - p_e))


def test_batched_weights_match_loop():
    selections, _, _ = choose_k_study(10, 10, 4, 5, seed=6)
    stats = S.agreement_stats(selections)
    rng = np.random.default_rng(0)
    w = rng.integers(0, 3, size=(7, 10)).astype(float)
    v = rng.integers(1, 3, size=(7, 4)).astype(float)
    batched = S.fleiss_kappa_from_stats(stats, w, v)
    assert batched.shape == (7,)
    loop = [S.fleiss_kappa_from_stats(stats, w[i], v[i]) for i in range(7)]
    np.testing.assert_allclose(batched, loop)


def test_perfect_and_chance_agreement():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.integers(0, 2, size=(200, 1)), 4, axis=1)
    assert S.fleiss_kappa(same) == pytest.approx(1.0)
    independent = rng.integers(0, 2, size=(4000, 4))
    assert abs(S.fleiss_kappa(independent)) < 0.03
