"""retrieval.ml.metrics against sklearn/scipy, hand-computed cases and Monte Carlo baselines."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import ndcg_score
from sklearn.metrics import pairwise_distances as sk_pairwise

from retrieval.ml import metrics as M


def clustered(n: int, d: int = 8, classes: int = 3, spread: float = 0.3, seed: int = 0):
    """Gaussian clusters around random centres, with their class labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d))
    return centres[labels] + spread * rng.normal(size=(n, d)), labels


def test_metrics_module_imports_without_torch():
    code = (
        "import sys; import retrieval.ml.metrics, retrieval.ml.splits; "
        "print(any(m.split('.')[0] in ('torch', 'faiss', 'timm') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=M.__file__.rsplit("/retrieval/", 1)[0],
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("metric, sk_metric", [("cosine", "cosine"), ("l2", "euclidean")])
def test_knn_matches_brute_force_and_excludes_self(metric, sk_metric):
    x = np.random.default_rng(1).normal(size=(50, 6))
    idx, dist = M.knn(x, 7, metric)
    full = sk_pairwise(x, metric=sk_metric)
    np.fill_diagonal(full, np.inf)
    expected = np.sort(full, axis=1)[:, :7]
    assert idx.shape == (50, 7)
    assert not (idx == np.arange(50)[:, None]).any()
    np.testing.assert_allclose(dist, expected, atol=1e-9)  # compare distances: tolerant to ties
    np.testing.assert_allclose(np.take_along_axis(full, idx, axis=1), dist, atol=1e-9)


def test_knn_keeps_duplicates_but_not_self():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]])
    idx, dist = M.knn(x, 1, "cosine")
    assert idx[0, 0] == 1 and idx[1, 0] == 0
    assert dist[0, 0] == pytest.approx(0.0)


def test_relevance_and_n_relevant_class_vector():
    labels = np.array(["a", "a", "b", "a", "c"])
    neighbours = np.array([[1, 2], [0, 3], [4, 0], [1, 0], [2, 3]])
    rel = M.relevance(labels, neighbours)
    assert rel.tolist() == [[True, False], [True, True], [False, False], [True, True], [False, False]]
    assert M.n_relevant(labels).tolist() == [2, 2, 0, 2, 0]


def test_relevance_multilabel_any_and_exact_match_brute_force():
    rng = np.random.default_rng(3)
    y = (rng.random((30, 4)) < 0.3).astype(int)
    n = len(y)
    for mode in ("any", "exact"):

        def rel(i, j, mode=mode):
            if mode == "exact":
                return bool((y[i] == y[j]).all())
            return bool((y[i] & y[j]).any()) or (not y[i].any() and not y[j].any())

        brute_r = [sum(rel(i, j) for j in range(n) if j != i) for i in range(n)]
        assert M.n_relevant(y, mode).tolist() == brute_r
        neighbours = M.knn(rng.normal(size=(n, 3)), 5)[0]
        expected = [[rel(i, j) for j in row] for i, row in enumerate(neighbours)]
        assert M.relevance(y, neighbours, mode).tolist() == expected


def test_precision_micro_and_macro_hand_case():
    rel = np.array([[1, 1], [1, 0], [1, 1], [0, 0]], dtype=bool)
    per_query = M.precision_at_k(rel, 2)
    assert per_query.tolist() == [1.0, 0.5, 1.0, 0.0]
    labels = np.array(["a", "a", "a", "b"])
    assert per_query.mean() == pytest.approx(0.625)  # micro
    assert M.macro_average(per_query, labels) == pytest.approx((2.5 / 3 + 0.0) / 2)  # mean of class means


def test_macro_multilabel_counts_query_in_each_of_its_classes():
    y = np.array([[1, 0], [1, 1], [0, 0]])
    per_query = np.array([1.0, 0.0, 0.5])
    # label 0: queries 0, 1 → 0.5; label 1: query 1 → 0.0; none: query 2 → 0.5
    assert M.macro_average(per_query, y) == pytest.approx((0.5 + 0.0 + 0.5) / 3)


def test_ap_at_3_five_item_toy_under_every_definition():
    # Five items on a line (l2): the query (item 0) ranks the others 1, 2, 3, 4 by distance.
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    idx, _ = M.knn(x, 4, "l2")
    assert idx[0].tolist() == [1, 2, 3, 4]
    # Case 1: labels A A B A A → for the query, top-3 relevance [1, 0, 1], R = 3 (items 1, 3, 4).
    #   Σ P@i·rel_i = P@1·1 + P@3·1 = 1 + 2/3 = 5/3
    #   min_k_R: /min(3, 3) = 5/9; hits: /2 = 5/6; R: /3 = 5/9; k: /3 = 5/9
    labels = np.array(list("AABAA"))
    rel, r = M.relevance(labels, idx), M.n_relevant(labels)
    expected = {"min_k_R": 5 / 9, "hits": 5 / 6, "R": 5 / 9, "k": 5 / 9}
    for definition, value in expected.items():
        assert M.average_precision_at_k(rel, r, 3, definition)[0] == pytest.approx(value)
    # Case 2: labels A B A B B → top-3 relevance [0, 1, 0], R = 1 (item 2).
    #   Σ P@i·rel_i = P@2·1 = 1/2
    #   min_k_R: /min(3, 1) = 1/2; hits: /1 = 1/2; R: /1 = 1/2; k: /3 = 1/6
    labels = np.array(list("ABABB"))
    rel, r = M.relevance(labels, idx), M.n_relevant(labels)
    expected = {"min_k_R": 1 / 2, "hits": 1 / 2, "R": 1 / 2, "k": 1 / 6}
    for definition, value in expected.items():
        assert M.average_precision_at_k(rel, r, 3, definition)[0] == pytest.approx(value)
    named = M.mean_average_precision_at_k(rel, r, 3, "hits")
    assert named.definition == "hits" and isinstance(named.value, float)


def test_ap_zero_when_nothing_relevant():
    rel = np.zeros((2, 3), dtype=bool)
    for definition in M.AP_DEFINITIONS:
        assert M.average_precision_at_k(rel, np.array([0, 4]), 3, definition).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        M.average_precision_at_k(rel, np.array([0, 4]), 3, "bogus")


def _sklearn_ndcg_per_query(true_gain: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """sklearn nDCG@k per query over all other items, with scores = −distance."""
    n = len(true_gain)
    out = []
    for q in range(n):
        others = np.arange(n) != q
        out.append(ndcg_score(true_gain[q, others][None], -distances[q, others][None], k=k))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_binary_matches_sklearn(k):
    x, labels = clustered(40, spread=1.5, seed=2)
    idx, _ = M.knn(x, k)
    ours = M.ndcg_binary(M.relevance(labels, idx), M.n_relevant(labels), k)
    true = (labels[:, None] == labels[None, :]).astype(float)
    np.testing.assert_allclose(ours, _sklearn_ndcg_per_query(true, sk_pairwise(x, metric="cosine"), k), atol=1e-10)


@pytest.mark.parametrize("gain_kind", ["exp", "linear"])
@pytest.mark.parametrize("k", [3, 5])
def test_ndcg_graded_matches_sklearn(gain_kind, k):
    rng = np.random.default_rng(4)
    weights = rng.uniform(100, 260, 35)
    x = np.c_[weights / 50, rng.normal(size=(35, 3))]
    idx, _ = M.knn(x, k)
    ours = M.ndcg_graded(weights, idx, k, gain_kind=gain_kind)
    rel = M.graded_relevance(weights[:, None], weights[None, :], np.ptp(weights))
    true = 2**rel - 1 if gain_kind == "exp" else rel  # sklearn's gain is linear: pass 2^rel − 1 for exp
    np.testing.assert_allclose(ours, _sklearn_ndcg_per_query(true, sk_pairwise(x, metric="cosine"), k), atol=1e-10)


def test_graded_relevance_scale():
    assert M.graded_relevance(150, np.array([150, 200, 400]), 100).tolist() == [1.0, 0.5, 0.0]


def test_random_ap_closed_form_matches_enumeration():
    # 5 candidates, R = 2, k = 3: enumerate every ordered top-3 drawn from the candidates.
    relevant = np.array([1, 1, 0, 0, 0], dtype=bool)
    for definition in M.AP_DEFINITIONS:
        values = []
        for perm in itertools.permutations(range(5), 3):
            values.append(M.average_precision_at_k(relevant[list(perm)][None], np.array([2]), 3, definition)[0])
        closed = M.random_average_precision(np.array([2]), 5, 3, definition)[0]
        assert closed == pytest.approx(np.mean(values), abs=1e-12), definition


def test_random_baselines_match_monte_carlo():
    x, labels = clustered(60, classes=4, seed=5)
    n, r = len(labels), M.n_relevant(labels)
    weights = np.random.default_rng(5).uniform(100, 250, n)
    for k in (1, 5, 10):
        checks = {
            "precision": (M.random_precision(r, n - 1), lambda nb, k=k: M.precision_at_k(M.relevance(labels, nb), k)),
            "ndcg": (M.random_ndcg_binary(r, n - 1, k), lambda nb, k=k: M.ndcg_binary(M.relevance(labels, nb), r, k)),
            "ndcg_graded": (M.random_ndcg_graded(weights, k), lambda nb, k=k: M.ndcg_graded(weights, nb, k)),
        }
        for definition in M.AP_DEFINITIONS:
            checks[f"ap[{definition}]"] = (
                M.random_average_precision(r, n - 1, k, definition),
                lambda nb, d=definition, k=k: M.average_precision_at_k(M.relevance(labels, nb), r, k, d),
            )
        for name, (closed, score) in checks.items():
            mc = M.random_baseline_mc(score, n, k, n_draws=1500, seed=k)
            assert closed.mean() == pytest.approx(mc.mean(), abs=0.01), (name, k)
            np.testing.assert_allclose(closed, mc, atol=0.08, err_msg=f"{name}@{k}")


def test_ttest_against_random_equals_one_sample_test_on_differences():
    rng = np.random.default_rng(6)
    observed, expected = rng.random(30), rng.random(30) * 0.5
    t, p = M.ttest_against_random(observed, expected)
    ref = stats.ttest_1samp(observed - expected, 0.0)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue))
    assert all(math.isnan(v) for v in M.ttest_against_random(np.ones(5), np.zeros(5)))


def test_hubness_hand_case_against_scipy_skew():
    # Top-1 lists: items 0, 2, 3, 4 all retrieve item 1; item 1 retrieves 0 → N_1 = [1, 4, 0, 0, 0].
    neighbours = np.array([[1], [0], [1], [1], [1]])
    counts = M.k_occurrence(neighbours, 1)
    assert counts.tolist() == [1, 4, 0, 0, 0]
    out = M.hubness(neighbours, ks=(1,))
    assert out["hubness_skew@1"] == pytest.approx(stats.skew([1, 4, 0, 0, 0]))
    assert out["antihub_share@1"] == pytest.approx(3 / 5)
    assert out["hubness_index"] == pytest.approx(math.exp(-abs(stats.skew([1, 4, 0, 0, 0]))))


def test_hubness_default_ks_uses_all_points():
    x = np.random.default_rng(7).normal(size=(200, 30))
    idx, _ = M.knn(x, 17)
    out = M.hubness(idx)
    for k in M.HUBNESS_KS:
        counts = np.bincount(idx[:, :k].ravel(), minlength=200)
        assert counts.sum() == 200 * k
        assert out[f"hubness_skew@{k}"] == pytest.approx(stats.skew(counts))
    assert 0 < out["hubness_index"] <= 1


def test_distance_correlation_upper_triangle_pearson():
    rng = np.random.default_rng(8)
    x, values = rng.normal(size=(25, 4)), rng.normal(size=25)
    r, p = M.distance_correlation(x, values, metric="l2")
    iu = np.triu_indices(25, k=1)
    emb = sk_pairwise(x)[iu]
    target = np.abs(values[:, None] - values[None, :])[iu]
    assert r == pytest.approx(np.corrcoef(emb, target)[0, 1])
    matrix = np.abs(values[:, None] - values[None, :])
    assert M.distance_correlation(x, matrix, metric="l2", precomputed=True) == pytest.approx((r, p))


def test_evaluate_retrieval_separated_clusters_beat_random():
    x, labels = clustered(90, classes=3, spread=0.2, seed=9)
    weights = labels * 50 + 120 + np.random.default_rng(9).normal(0, 5, 90)
    out = M.evaluate_retrieval(x, labels, numeric=weights, ks=(1, 5))
    for name in ("precision@5", "map@5", "ndcg@5", "ndcg_graded@5", "map@5[hits]"):
        assert out[name] > out[f"{name}_random"]
        assert out[f"{name}_p"] < 0.05
    assert out["precision@5"] > 0.95 and out["precision@5_macro"] > 0.95
    assert out["precision@5_random"] == pytest.approx(np.mean(M.n_relevant(labels) / 89))
    assert out["ap_definition"] == "min_k_R" and out["map@5"] == out["map@5[min_k_R]"]
    assert out["distance_correlation_r"] > 0 and out["distance_correlation_p"] < 0.05
    assert "hubness_skew@17" in out and "hubness_index" in out


def test_evaluate_retrieval_random_embeddings_near_baseline():
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 2, 300)
    out = M.evaluate_retrieval(rng.normal(size=(300, 16)), labels, ks=(5,))
    assert out["precision@5"] == pytest.approx(out["precision@5_random"], abs=0.05)


def test_evaluate_retrieval_multilabel():
    x, classes = clustered(60, classes=3, spread=0.2, seed=11)
    y = np.eye(3, dtype=int)[classes]
    out = M.evaluate_retrieval(x, y, ks=(3,))
    assert out["precision@3"] > 0.9 and out["precision@3_macro"] > 0.9


def test_distance_correlation_subsamples_large_collections():
    rng = np.random.default_rng(12)
    values = rng.normal(size=300)
    x = np.c_[values, 0.1 * rng.normal(size=(300, 2))]
    r_all, _ = M.distance_correlation(x, values, metric="l2", max_items=None)
    r_sub, _ = M.distance_correlation(x, values, metric="l2", max_items=100)
    assert r_sub == pytest.approx(r_all, abs=0.1) and r_sub != r_all
    with pytest.raises(ValueError):
        M.evaluate_retrieval(x, values > 0, ap_definition="bogus")


def test_hubness_states_its_skewness_formula_and_follows_it():
    """Issue 14: the skewness hubness reports is the biased sample g1 (scipy.stats.skew, bias=True), and
    every result says so."""
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    neighbours = np.argsort(rng.random((40, 40)), axis=1)[:, 1:8]
    out = M.hubness(neighbours, ks=(5,))
    counts = np.bincount(neighbours[:, :5].ravel(), minlength=40).astype(float)
    m2, m3 = ((counts - counts.mean()) ** 2).mean(), ((counts - counts.mean()) ** 3).mean()
    assert out["hubness_skew@5"] == pytest.approx(m3 / m2**1.5, abs=1e-12)
    assert out["hubness_skew@5"] == pytest.approx(sps.skew(counts, bias=True), abs=1e-12)
    assert "biased sample skewness g1" in out["k_occurrence_skewness"]
