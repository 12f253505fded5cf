"""Cohen's kappa (plain and weighted), pairwise matrix, per-case confusion counts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion

from reports import stats as S


def test_hand_binary():
    # agreement 4/6, both raters select 3 of 6 -> p_e = 1/2 -> kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert S.cohen_kappa([0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]) == pytest.approx(1 / 3)


def test_hand_weighted():
    # a = (1, 2, 3), b = (1, 3, 3): one disagreement 2 vs 3 (distance 1).
    # Row margins (1, 1, 1), column margins (1, 0, 2), n = 3 -> E_ij = c_j / 3.
    # quadratic: expected sum = (1/3)[1 * (0 + 1 + 4) + 2 * (4 + 1 + 0)] = 5 -> kappa = 1 - 1/5
    # linear:    expected sum = (1/3)[1 * (0 + 1 + 2) + 2 * (2 + 1 + 0)] = 3 -> kappa = 1 - 1/3
    assert S.cohen_kappa([1, 2, 3], [1, 3, 3], weights="quadratic") == pytest.approx(0.8)
    assert S.cohen_kappa([1, 2, 3], [1, 3, 3], weights="linear") == pytest.approx(2 / 3)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(weights, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, size=80)
    b = np.clip(a + rng.integers(-1, 2, size=80), 1, 5)
    assert S.cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights))


def test_labels_include_unused_categories_like_sklearn():
    a, b = [1, 2, 2, 4], [1, 2, 4, 4]
    labels = [1, 2, 3, 4, 5]
    for w in (None, "linear", "quadratic"):
        expected = cohen_kappa_score(a, b, labels=labels, weights=w)
        assert S.cohen_kappa(a, b, labels=labels, weights=w) == pytest.approx(expected)


def test_unknown_value_or_weights_raise():
    with pytest.raises(ValueError):
        S.cohen_kappa([1, 2], [1, 7], labels=[1, 2, 3])
    with pytest.raises(ValueError):
        S.cohen_kappa([1, 2], [1, 2], weights="cubic")


def test_pairwise_hand(hand_study):
    # R1-R2 agree on 10/12 items, R1-R3 and R2-R3 on 8/12; every reader selects half -> p_e = 1/2.
    selections, _ = hand_study
    expected = np.array([[1, 2 / 3, 1 / 3], [2 / 3, 1, 1 / 3], [1 / 3, 1 / 3, 1]])
    np.testing.assert_allclose(S.pairwise_cohen_kappa(selections.reshape(-1, 3)), expected)


@pytest.mark.parametrize("weights", [None, "quadratic"])
def test_pairwise_matches_sklearn(weights):
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=(60, 1))
    ratings = np.clip(truth + rng.integers(-1, 2, size=(60, 4)), 1, 5)
    matrix = S.pairwise_cohen_kappa(ratings, weights=weights, labels=[1, 2, 3, 4, 5])
    for i in range(4):
        for j in range(4):
            expected = cohen_kappa_score(ratings[:, i], ratings[:, j], weights=weights, labels=[1, 2, 3, 4, 5])
            assert matrix[i, j] == pytest.approx(expected)


def test_paired_confusion_and_pooled_kappa_statistic():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 2, size=(9, 10))
    b = rng.integers(0, 2, size=(9, 10))
    conf = S.paired_confusion(a, b)
    for c in range(9):
        np.testing.assert_array_equal(conf[c], sk_confusion(a[c], b[c], labels=[0, 1]))
    w = np.array([0, 2, 1, 1, 3, 0, 1, 1, 2])
    pooled = cohen_kappa_score(np.repeat(a, w, axis=0).ravel(), np.repeat(b, w, axis=0).ravel())
    assert S.kappa_statistic(conf)(w[None].astype(float))[0] == pytest.approx(pooled)
    assert S.kappa_from_confusion(conf.sum(0)) == pytest.approx(cohen_kappa_score(a.ravel(), b.ravel()))
