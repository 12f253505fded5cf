"""Case (cluster) bootstrap: equivalences, reference implementation, coverage, case vs item width."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reports import stats as S

from ._sim import choose_k_study


def _width(ci):
    return ci["high"] - ci["low"]


def test_case_bootstrap_wider_than_item_bootstrap_on_clustered_data():
    """Easy and hard queries make items of one case correlated: the item bootstrap is too narrow."""
    selections, _, _ = choose_k_study(50, 10, 5, 5, seed=0, noise_spread=1.5)
    by_case = S.bootstrap_ci(S.fleiss_statistic(S.agreement_stats(selections)), 50, seed=1)
    by_item = S.bootstrap_ci(S.fleiss_statistic(S.agreement_stats(selections.reshape(-1, 1, 5))), 500, seed=1)
    assert by_case["estimate"] == pytest.approx(by_item["estimate"])
    assert _width(by_case) > 1.4 * _width(by_item)


def test_case_and_item_bootstrap_similar_without_clustering():
    """Control for the test above: with homogeneous cases the two widths are close."""
    selections, _, _ = choose_k_study(50, 10, 5, 5, seed=0, noise_spread=0.0)
    by_case = S.bootstrap_ci(S.fleiss_statistic(S.agreement_stats(selections)), 50, seed=1)
    by_item = S.bootstrap_ci(S.fleiss_statistic(S.agreement_stats(selections.reshape(-1, 1, 5))), 500, seed=1)
    assert _width(by_case) < 1.25 * _width(by_item)


def test_cluster_labels_on_items_equal_case_level_bootstrap():
    selections, _, _ = choose_k_study(30, 10, 4, 5, seed=2, noise_spread=1.0)
    case_level = S.bootstrap_ci(S.fleiss_statistic(S.agreement_stats(selections)), 30, seed=3, n_resamples=300)
    item_stats = S.agreement_stats(selections.reshape(-1, 1, 4))
    clustered = S.bootstrap_ci(
        S.fleiss_statistic(item_stats), 300, seed=3, n_resamples=300, cluster=np.repeat(np.arange(30), 10)
    )
    assert clustered["low"] == pytest.approx(case_level["low"])
    assert clustered["high"] == pytest.approx(case_level["high"])
    assert clustered["resampled"] == "clusters" and case_level["resampled"] == "cases"


@pytest.mark.parametrize("cluster", [None, np.repeat(np.arange(8), 5)])
def test_vectorised_and_index_paths_agree(cluster):
    x = np.random.default_rng(4).normal(size=40)
    fast = S.bootstrap_ci(S.mean_statistic(x), 40, seed=5, n_resamples=400, cluster=cluster, batch_size=150)
    slow = S.bootstrap_ci(lambda idx: x[idx].mean(), 40, seed=5, n_resamples=400, cluster=cluster, vectorized=False)
    for key in ("estimate", "low", "high"):
        assert fast[key] == pytest.approx(slow[key])


def test_reader_resampling_paths_agree_and_widen():
    selections, _, _ = choose_k_study(40, 10, 6, 5, seed=6)
    selections[..., :3] = choose_k_study(40, 10, 3, 5, seed=6, noise=0.3)[0]  # 3 careful, 3 noisy readers
    stats = S.agreement_stats(selections)
    items = selections.reshape(40, -1, 6)

    def slow(idx, readers):
        return S.fleiss_kappa_from_stats(S.agreement_stats(items[idx]), None, np.bincount(readers, minlength=6))

    both = S.bootstrap_ci(S.fleiss_statistic(stats), 40, seed=7, n_resamples=200, n_readers=6)
    both_slow = S.bootstrap_ci(slow, 40, seed=7, n_resamples=200, n_readers=6, vectorized=False)
    assert both["low"] == pytest.approx(both_slow["low"]) and both["high"] == pytest.approx(both_slow["high"])
    cases_only = S.bootstrap_ci(S.fleiss_statistic(stats), 40, seed=7, n_resamples=200)
    assert both["resampled"] == "cases+readers"
    assert _width(both) > _width(cases_only)


def test_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(8).exponential(size=60)
    ours = S.bootstrap_ci(S.mean_statistic(x), 60, seed=9, n_resamples=4000)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(10))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert ours["low"] == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert ours["high"] == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)


def test_coverage_of_the_mean():
    rng = np.random.default_rng(11)
    hits = 0
    for rep in range(300):
        x = rng.normal(1.0, 2.0, size=40)
        ci = S.bootstrap_ci(S.mean_statistic(x), 40, seed=rep, n_resamples=500)
        hits += ci["low"] <= 1.0 <= ci["high"]
    assert 0.88 <= hits / 300 <= 0.98


def test_reports_settings_and_is_reproducible():
    x = np.arange(20.0)
    a = S.bootstrap_ci(S.mean_statistic(x), 20, seed=12, n_resamples=250, level=0.9)
    b = S.bootstrap_ci(S.mean_statistic(x), 20, seed=12, n_resamples=250, level=0.9)
    c = S.bootstrap_ci(S.mean_statistic(x), 20, seed=13, n_resamples=250, level=0.9)
    assert a == b and a != c
    assert (a["n_resamples"], a["seed"], a["level"], a["method"]) == (250, 12, 0.9, "percentile")
    assert a["estimate"] == pytest.approx(9.5) and a["low"] < 9.5 < a["high"]


def test_bca_expanded_same_interval_vectorised_or_not_and_wider_than_percentile():
    rng = np.random.default_rng(21)
    x = rng.gamma(2.0, size=30)  # skewed per-case values
    kw = dict(n_resamples=2000, seed=4, method="bca-expanded")
    fast = S.bootstrap_ci(S.mean_statistic(x), 30, **kw)
    slow = S.bootstrap_ci(lambda idx: x[idx].mean(), 30, vectorized=False, **kw)
    assert (fast["low"], fast["high"]) == pytest.approx((slow["low"], slow["high"]))
    assert fast["method"] == "bca-expanded"
    plain = S.bootstrap_ci(S.mean_statistic(x), 30, n_resamples=2000, seed=4)
    assert fast["high"] - fast["low"] > plain["high"] - plain["low"]  # the expanded level widens it at 30 cases
    assert fast["low"] < x.mean() < fast["high"]
    with pytest.raises(ValueError):
        S.bootstrap_ci(S.mean_statistic(x), 30, n_resamples=10, method="bca")
