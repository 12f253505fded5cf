"""Permutation tests: method vs random order, method vs method (sign flip), paired t-test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from reports import stats as S

from ._sim import random_permutation_ranks, ranking_study


def _exact_sign_flip_p(d):
    null = np.array([np.mean(np.array(s) * d) for s in itertools.product([-1, 1], repeat=len(d))])
    return np.mean(np.abs(null) >= abs(d.mean()) - 1e-12)


def test_sign_flip_matches_exact_enumeration_and_scipy():
    # 10 cases: 2^10 sign patterns, all enumerated: the p-value is exact (it was simulated, within 0.01)
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.1, size=10)
    b = a - rng.normal(0.05, 0.08, size=10)
    result = S.paired_permutation_test(a, b, n_resamples=20000, seed=1)
    exact = _exact_sign_flip_p(a - b)
    assert result["p_value"] == pytest.approx(exact, rel=1e-12)
    ref = sps.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples", n_resamples=np.inf
    )
    assert result["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (result["n_resamples"], result["seed"], result["n"]) == (20000, 1, 10)
    assert (result["method"], result["n_patterns"], result["mc_se"]) == ("exact", 1024, None)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_sign_flip_is_exact_up_to_15_cases(alternative):
    rng = np.random.default_rng(11)
    d = rng.normal(0.1, 0.3, size=15)
    result = S.paired_permutation_test(d, np.zeros(15), n_resamples=99, seed=1, alternative=alternative)
    ref = sps.permutation_test(
        (d, np.zeros(15)),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative=alternative,
    )
    assert result["method"] == "exact" and result["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)


def test_sign_flip_beyond_15_cases_is_simulated_with_its_standard_error_and_floor():
    rng = np.random.default_rng(12)
    d = rng.normal(0.05, 0.3, size=18)
    exact = _exact_sign_flip_p(d)  # 2^18 patterns, by hand
    result = S.paired_permutation_test(d, np.zeros(18), n_resamples=4000, seed=3)
    p = result["p_value"]
    assert result["method"] == "monte carlo" and result["n_patterns"] == 2**18
    assert result["mc_se"] == pytest.approx(np.sqrt(p * (1 - p) / 4000))
    assert result["p_floor"] == pytest.approx(1 / 4001)
    assert abs(p - exact) < 4 * result["mc_se"]


def test_sign_flip_alternatives_and_no_difference():
    a = np.linspace(0.5, 0.9, 40)
    b = a - 0.02 * np.linspace(0.5, 1.5, 40)
    greater = S.paired_permutation_test(a, b, n_resamples=999, seed=2, alternative="greater")
    less = S.paired_permutation_test(a, b, n_resamples=999, seed=2, alternative="less")
    assert greater["p_value"] == pytest.approx(1 / 1000)  # all differences positive: no flip beats it
    assert less["p_value"] == pytest.approx(1.0)
    assert S.paired_permutation_test(a, a, n_resamples=99, seed=3)["p_value"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        S.paired_permutation_test(a, b, n_resamples=9, alternative="bigger")


def test_paired_ttest_matches_formula():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=15), rng.normal(size=15)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(15))
    result = S.paired_ttest(a, b)
    assert result["statistic"] == pytest.approx(t)
    assert result["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), df=14))
    assert result["df"] == 14


def test_vs_random_null_mean_is_the_closed_form():
    readers, latent = ranking_study(40, 10, 1, seed=5)
    method = random_permutation_ranks(40, 10, seed=6)
    result = S.permutation_test_vs_random(method, readers[..., 0], p=10, n_resamples=2000, seed=7)
    assert result["null_mean"] == pytest.approx(S.expected_random_ndcg(10, 10), abs=0.003)
    assert (result["n_resamples"], result["seed"], result["p"]) == (2000, 7, 10)


def test_vs_random_perfect_method_has_smallest_p():
    readers, _ = ranking_study(20, 10, 1, seed=8)
    result = S.permutation_test_vs_random(readers[..., 0], readers[..., 0], p=3, n_resamples=499, seed=9)
    assert result["statistic"] == pytest.approx(1.0)
    assert result["p_value"] == pytest.approx(1 / 500) == result["p_floor"]  # the floor 1/(B+1), stated
    assert result["method"] == "monte carlo"
    assert result["mc_se"] == pytest.approx(np.sqrt((1 / 500) * (499 / 500) / 499))


def test_vs_random_is_calibrated_under_the_null():
    rejections = 0
    for rep in range(200):
        reference = random_permutation_ranks(10, 10, seed=1000 + rep)
        method = random_permutation_ranks(10, 10, seed=2000 + rep)
        result = S.permutation_test_vs_random(method, reference, n_resamples=199, seed=rep)
        rejections += result["p_value"] <= 0.05
    assert 0.01 <= rejections / 200 <= 0.11
