"""Rating studies: ICC vs pingouin, weighted kappa between readers, rating-distance correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from reports import stats as S

PINGOUIN = {
    "ICC1": "ICC(1,1)", "ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)",
    "ICC1k": "ICC(1,k)", "ICC2k": "ICC(A,k)", "ICC3k": "ICC(C,k)",
}  # fmt: skip


def test_hand_3x2():
    # rows (1,2), (3,4), (5,6): grand mean 3.5; SS_rows = 2 * (4 + 0 + 4) = 16, SS_cols = 3 * 0.5 = 1.5,
    # SS_total = 17.5 -> SS_error = 0, SS_within = 1.5.
    # MSR = 8, MSC = 1.5, MSE = 0, MSW = 0.5.
    # ICC1 = (8 - 0.5)/(8 + 0.5) = 15/17; ICC2 = 8/(8 + 2 * 1.5/3) = 8/9; ICC3 = 1.
    x = np.array([[1, 2], [3, 4], [5, 6]])
    assert S.icc(x, kind="ICC1") == pytest.approx(15 / 17)
    assert S.icc(x, kind="ICC2") == pytest.approx(8 / 9)
    assert S.icc(x, kind="ICC3") == pytest.approx(1.0)
    assert S.icc(x, kind="ICC(A,1)") == pytest.approx(8 / 9)  # pingouin / McGraw-Wong name


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pingouin(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(3, 1, size=(25, 1))
    ratings = np.clip(np.round(truth + rng.normal(0, 0.7, size=(25, 4)) + [0, 0.3, -0.4, 0.5]), 1, 5)
    long = pd.DataFrame(
        {"item": np.repeat(np.arange(25), 4), "reader": np.tile(np.arange(4), 25), "rating": ratings.ravel()}
    )
    table = pingouin.intraclass_corr(long, targets="item", raters="reader", ratings="rating").set_index("Type")
    for kind, name in PINGOUIN.items():
        assert S.icc(ratings, kind=kind) == pytest.approx(table.loc[name, "ICC"])


def test_icc_rejects_missing_and_unknown_kind():
    with pytest.raises(ValueError):
        S.icc([[1, 2], [3, np.nan]])
    with pytest.raises(ValueError):
        S.icc([[1, 2], [3, 4]], kind="ICC4")


def test_weighted_kappa_between_readers():
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 6, size=(40, 1))
    ratings = np.clip(truth + rng.integers(-1, 2, size=(40, 3)), 1, 5)
    matrix = S.pairwise_cohen_kappa(ratings, weights="linear", labels=[1, 2, 3, 4, 5])
    assert matrix[0, 2] == pytest.approx(cohen_kappa_score(ratings[:, 0], ratings[:, 2], weights="linear"))
    assert (matrix[~np.eye(3, dtype=bool)] > S.pairwise_cohen_kappa(ratings)[~np.eye(3, dtype=bool)]).all()


def test_distance_rating_correlation():
    rng = np.random.default_rng(4)
    distances = rng.random(30)
    ratings = np.clip(np.round(5 - 4 * distances[:, None] + rng.normal(0, 0.5, size=(30, 3))), 1, 5)
    result = S.distance_rating_correlation(ratings, distances)
    mean = ratings.mean(1)
    assert result["spearman"] == pytest.approx(sps.spearmanr(mean, distances).statistic)
    assert result["pearson"] == pytest.approx(sps.pearsonr(mean, distances).statistic)
    assert result["spearman"] < -0.5 and result["n"] == 30
    monotone = S.distance_rating_correlation([5, 4, 3, 2, 1], [0.1, 0.2, 0.5, 0.6, 0.9])
    assert monotone["spearman"] == pytest.approx(-1.0)
    with_nan = S.distance_rating_correlation([5, np.nan, 3, 2, 1], [0.1, 0.2, 0.5, 0.6, 0.9])
    assert with_nan["n"] == 4


def _rating_study(n_items=60, n_readers=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(3, 1, size=(n_items, 1))
    bias = rng.normal(0, 0.3, size=n_readers)
    return np.clip(np.round(truth + bias + rng.normal(0, 0.8, size=(n_items, n_readers))), 1, 5)


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_icc_statistic_counts_a_reader_drawn_twice_once():
    # the repro: x[:, [0, 0, 0]] is three raters in perfect agreement (ICC = 1 exactly);
    # inside a readers-too resample it is one reader, which gives no ICC (dropped, as n_failed)
    x = _rating_study()
    idx = np.arange(len(x))
    assert S.icc(x[:, [0, 0, 0]]) == pytest.approx(1.0)
    stat = S.icc_statistic(x)
    assert np.isnan(stat(idx, np.array([0, 0, 0])))
    # readers 0, 0, 2 drawn: the ICC of the distinct readers 0 and 2 (pingouin on those columns)
    long = pd.DataFrame({"item": np.repeat(idx, 2), "reader": np.tile([0, 2], len(x)), "rating": x[:, [0, 2]].ravel()})
    table = pingouin.intraclass_corr(long, targets="item", raters="reader", ratings="rating").set_index("Type")
    assert stat(idx, np.array([0, 2, 0])) == pytest.approx(table.loc["ICC(A,1)", "ICC"])
    assert stat(idx) == pytest.approx(S.icc(x))  # cases only: unchanged


def test_readers_too_icc_interval_is_not_pinned_at_one():
    # with 3 readers, 1/9 of reader draws are one reader three times: counted as three raters these
    # gave ICC = 1 and the 97.5 % percentile was exactly 1.000 (issue 14)
    x = _rating_study(n_items=60, n_readers=3, seed=1)
    res = S.bootstrap_ci(S.icc_statistic(x), len(x), n_resamples=400, seed=2, n_readers=3, vectorized=False)
    assert res["resampled"] == "cases+readers"
    assert res["high"] < 0.99 and res["low"] < S.icc(x) < res["high"]
    assert 0.05 < res["n_failed"] / 400 < 0.2  # one distinct reader: 3/27 of draws, dropped
