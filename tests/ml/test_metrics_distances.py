"""Retrieval metrics from a precomputed distance matrix (SSIM runs): the same results as from embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import pairwise_distances as sk_pairwise

from retrieval.ml import metrics as M


def clustered(n: int, d: int = 8, classes: int = 3, spread: float = 0.6, seed: int = 0):
    """Overlapping Gaussian clusters (imperfect retrieval), their classes and a numeric label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.normal(size=(classes, d))[labels] + spread * rng.normal(size=(n, d))
    return x, labels, labels * 40.0 + 120 + rng.normal(0, 15, n)


def _stable_neighbours(d: np.ndarray, k: int) -> np.ndarray:
    """Brute force: each row sorted by distance, equal distances by lower index, self excluded."""
    d = np.array(d, dtype=float)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _assert_same(got: dict, expected: dict) -> None:
    """Same keys; strings equal, numbers equal up to float rounding (NaN = NaN)."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, str):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


@pytest.mark.parametrize("metric, sk_metric", [("cosine", "cosine"), ("l2", "euclidean")])
def test_from_distances_equals_evaluate_retrieval_on_the_embeddings_own_matrix(metric, sk_metric):
    x, labels, weights = clustered(80, seed=1)
    distances = M.pairwise_distances(x, x, metric)
    np.testing.assert_allclose(distances, sk_pairwise(x, metric=sk_metric), atol=1e-6)  # sqrt of rounding at 0
    from_x = M.evaluate_retrieval(x, labels, numeric=weights, ks=(1, 5, 10), metric=metric)
    from_d = M.evaluate_retrieval_from_distances(distances, labels, weights, ks=(1, 5, 10))
    assert from_d.pop("metric") == "precomputed" and from_x.pop("metric") == metric
    assert "distance_correlation_r" in from_d and "hubness_skew@17" in from_d and "ndcg_graded@10" in from_d
    _assert_same(from_d, from_x)
    assert 0 < from_d["precision@5"] < 1  # not a trivial case where any ranking scores the same


def test_from_distances_equals_evaluate_retrieval_multilabel_and_options():
    x, classes, _ = clustered(60, classes=4, seed=2)
    y = np.eye(4, dtype=int)[classes] | (np.random.default_rng(2).random((60, 4)) < 0.15)
    options = dict(ap_definition="hits", relevance_mode="exact", hubness_ks=(3, 5))
    from_x = M.evaluate_retrieval(x, y, ks=(3,), metric="l2", **options)
    from_d = M.evaluate_retrieval_from_distances(M.pairwise_distances(x, x, "l2"), y, ks=(3,), **options)
    assert (from_x.pop("metric"), from_d.pop("metric")) == ("l2", "precomputed")
    _assert_same(from_d, from_x)


def test_precomputed_neighbours_break_ties_by_lower_index_even_at_the_kth_place():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 3, size=(40, 40)).astype(float)  # many ties
    for k in (1, 4, 39):
        idx, dist = M.knn(d, k, "precomputed")
        np.testing.assert_array_equal(idx, _stable_neighbours(d, k))
        np.testing.assert_array_equal(dist, np.take_along_axis(d, idx, axis=1))
    row = np.array([[0.0, 1.0, 1.0, 1.0, 0.5]] * 5)
    assert M.knn(row, 2, "precomputed")[0][0].tolist() == [4, 1]


def test_embedding_neighbours_break_ties_by_lower_index():
    x = np.repeat(np.random.default_rng(4).normal(size=(6, 3)), 5, axis=0)  # 6 groups of 5 identical rows
    idx, _ = M.knn(x, 6, "l2")
    np.testing.assert_array_equal(idx, _stable_neighbours(M.pairwise_distances(x, x, "l2"), 6))


def test_precomputed_matrix_hand_computed_case():
    # query 0's nearest are 2 (same class) then 1 (other class); P@1 = 1, AP@2 = (1/1) / min(2, R=1) = 1
    d = np.array([[0.0, 0.3, 0.1, 0.9], [0.3, 0.0, 0.8, 0.2], [0.1, 0.8, 0.0, 0.5], [0.9, 0.2, 0.5, 0.0]])
    labels = np.array([0, 1, 0, 1])
    out = M.evaluate_retrieval_from_distances(d, labels, ks=(1, 2), hubness_ks=(1,))
    # rankings: 0 → [2, 1], 1 → [3, 0], 2 → [0, 3], 3 → [1, 2]: every first neighbour is relevant
    assert out["precision@1"] == 1.0 and out["precision@2"] == 0.5 and out["map@2"] == 1.0
    assert out["precision@1_random"] == pytest.approx(1 / 3) and out["n_queries"] == 4
    assert out["hubness_skew@1"] == 0.0 and out["antihub_share@1"] == 0.0  # each item is someone's first


def test_distance_correlation_uses_a_precomputed_matrix():
    rng = np.random.default_rng(5)
    a = rng.random((30, 30))
    d = a + a.T
    values = rng.normal(size=30)
    upper = np.triu_indices(30, k=1)
    expected = stats.pearsonr(d[upper], np.abs(values[:, None] - values[None, :])[upper])
    r, p = M.distance_correlation(d, values, metric="precomputed")
    assert (r, p) == pytest.approx((expected.statistic, expected.pvalue))
    out = M.evaluate_retrieval_from_distances(d, None, values, ks=(3,))
    assert out["distance_correlation_r"] == pytest.approx(expected.statistic)


@pytest.mark.parametrize("bad", [np.zeros((4, 3)), np.zeros(4), np.where(np.eye(4) > 0, np.nan, 1.0)])
def test_precomputed_matrix_must_be_square_and_without_nan(bad):
    with pytest.raises(ValueError):
        M.evaluate_retrieval_from_distances(bad, np.array([0, 1, 0, 1]), ks=(1,))


def test_label_distance_correlation_multilabel_is_pearson_of_jaccard_distances_hand_made():
    # Four images on a line (L2 distances are the coordinate differences) and their finding sets:
    # {}, {A}, {A, B}, {B}. Jaccard distances written out by hand, pairs in upper-triangle order.
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    y = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    embedding = [abs(x[i, 0] - x[j, 0]) for i, j in pairs]  # 1, 3, 6, 2, 5, 3
    jaccard = [1.0, 1.0, 1.0, 0.5, 1.0, 0.5]  # {}–any: 1; {A}–{A,B}: 1/2; {A}–{B}: 1; {A,B}–{B}: 1/2
    expected = stats.pearsonr(embedding, jaccard)
    r, p, name = M.label_distance_correlation(x, y, metric="l2")
    assert name == "jaccard"
    assert r == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    # By hand: Σ(e−ē)(j−j̄) = 5/6, Σ(e−ē)² = 52/3, Σ(j−j̄)² = 1/3, so r = (5/6) / √(52/9) = 2.5 / √52.
    assert r == pytest.approx(2.5 / np.sqrt(52))


def test_label_distance_correlation_binary_classes_and_empty_sets():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.1, 0.9], [0.0, 0.2]])
    classes = np.array([0, 0, 1, 1, 0])
    d = [np.linalg.norm(x[i] - x[j]) for i in range(5) for j in range(i + 1, 5)]
    mismatch = [float(classes[i] != classes[j]) for i in range(5) for j in range(i + 1, 5)]
    r, p, name = M.label_distance_correlation(x, classes, metric="l2")
    assert name == "class"
    assert r == pytest.approx(stats.pearsonr(d, mismatch).statistic) and r > 0.9
    # Two images without findings are at label distance 0 (relevant to each other, as in `relevance`).
    got, _ = M.label_distances(np.array([[0, 0], [0, 0], [1, 0]]))
    assert list(got) == [0.0, 1.0, 1.0]


def test_label_distance_correlation_is_nan_when_every_image_has_the_same_class():
    r, p, _ = M.label_distance_correlation(np.random.default_rng(0).normal(size=(6, 3)), np.zeros(6, int))
    assert np.isnan(r) and np.isnan(p)


def test_evaluate_retrieval_reports_the_label_distance_correlation_for_classes_and_multilabel():
    x, classes, _ = clustered(40, seed=2)
    out = M.evaluate_retrieval(x, classes, ks=(1, 3))
    r, p, _ = M.label_distance_correlation(x, classes)
    assert out["label_distance"] == "class" and out["label_distance_correlation_r"] == pytest.approx(r)
    assert out["label_distance_correlation_p"] == pytest.approx(p) and r > 0.3  # clusters follow the classes
    multi = np.eye(3, dtype=int)[classes]
    multi[::5, 0] = 1
    out = M.evaluate_retrieval(x, multi, ks=(1,))
    assert out["label_distance"] == "jaccard"
    assert out["label_distance_correlation_r"] == pytest.approx(M.label_distance_correlation(x, multi)[0])
    d = M.square_distances(sk_pairwise(x, metric="cosine"))
    pre = M.evaluate_retrieval_from_distances(d, multi, ks=(1,))
    assert pre["label_distance_correlation_r"] == pytest.approx(out["label_distance_correlation_r"], abs=1e-9)
