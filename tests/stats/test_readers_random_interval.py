"""Readers and cases random by the jackknife over each (issue 14): stats.readers_random_interval (the floored rule
of the means, the R − 1 df rule of the ICC), the floored Obuchowski–Rockette intervals (mrmc.or_mean_ci / or_hillis
with floor=True), checked against the published OR quantities (loop reference, Van Dyke data), by hand and against
each other."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reports import mrmc
from reports import stats as S

from .test_mrmc import _auc, _van_dyke


def _scores(n_cases=25, n_readers=4, seed=0, reader_sd=0.05):
    rng = np.random.default_rng(seed)
    return (
        0.6
        + rng.normal(0, 0.1, (n_cases, 1))
        + rng.normal(0, reader_sd, n_readers)
        + rng.normal(0, 0.08, (n_cases, n_readers))
    )


def _mean_jackknife(y: np.ndarray):
    """The mean over readers and cases without each case, each reader, and both (by loops)."""
    k, r = y.shape
    cases = np.array([np.delete(y, c, axis=0).mean() for c in range(k)])
    readers = np.array([np.delete(y, j, axis=1).mean() for j in range(r)])
    both = np.array([[np.delete(np.delete(y, c, axis=0), j, axis=1).mean() for j in range(r)] for c in range(k)])
    return cases, readers, both


def _or_quantities(y: np.ndarray) -> dict:
    """Var, Cov2 (the published jackknife covariances over cases, Hillis et al. 2005) and MS(R), by loops."""
    k, r = y.shape
    jack = [[(y[:, j].sum() - y[c, j]) / (k - 1) for c in range(k)] for j in range(r)]
    mean = [sum(row) / k for row in jack]

    def cov(j, j2):
        return (k - 1) / k * sum((jack[j][c] - mean[j]) * (jack[j2][c] - mean[j2]) for c in range(k))

    var = sum(cov(j, j) for j in range(r)) / r
    cov2 = sum(cov(j, j2) for j in range(r) for j2 in range(r) if j != j2) / (r * (r - 1))
    return {"var": var, "cov2": cov2, "ms_r": float(np.var(y.mean(0), ddof=1))}


@pytest.mark.parametrize("seed", range(4))
def test_case_noise_of_the_reader_jackknife_of_a_mean_is_var_minus_cov2_over_r(seed):
    y = _scores(seed=seed)
    q = _or_quantities(y)
    _, _, both = _mean_jackknife(y)
    assert S.reader_jackknife_case_noise(both) == pytest.approx((q["var"] - q["cov2"]) / y.shape[1])


@pytest.mark.parametrize("reader_sd, floored", [(0.08, False), (0.0, True)])
def test_interval_of_a_mean_is_the_or_variance_with_the_reader_component_kept_non_negative(reader_sd, floored):
    y = _scores(seed=5, reader_sd=reader_sd)
    k, r = y.shape
    q = _or_quantities(y)
    no_r = q["var"] - q["cov2"]  # E[MS(R)] without reader variance
    assert (q["ms_r"] < no_r) == floored
    r_term, df_r = (no_r, k - 1) if floored else (q["ms_r"], r - 1)
    c_term = r * max(q["cov2"], 0.0)
    den = r_term + c_term
    ddf = den**2 / (r_term**2 / df_r + c_term**2 / (k - 1))
    half = sps.t.ppf(0.975, ddf) * np.sqrt(den / r)
    res = S.readers_random_interval(y.mean(), *_mean_jackknife(y))
    assert res["df"] == pytest.approx(ddf) and res["se"] == pytest.approx(np.sqrt(den / r))
    assert (res["low"], res["high"]) == pytest.approx((y.mean() - half, y.mean() + half))
    floor = mrmc.or_mean_ci(y, floor=True)
    assert (floor["low"], floor["high"], floor["df"]) == pytest.approx((res["low"], res["high"], res["df"]))
    plain = mrmc.or_mean_ci(y)  # Hillis' ddf_H, MS(R) as it is: narrower where the floor binds
    if floored:
        assert plain["high"] - plain["low"] < res["high"] - res["low"]
    else:
        assert plain["se"] == pytest.approx(res["se"])


def test_fisher_z_and_too_few_readers_or_cases():
    rng = np.random.default_rng(1)
    cases, readers, both = 0.6 + 0.02 * rng.normal(size=20), [0.55, 0.6, 0.66], 0.6 + 0.03 * rng.normal(size=(20, 3))
    z = S.readers_random_interval(0.6, cases, readers, both, fisher_z=True)
    t = S.readers_random_interval(*np.arctanh([0.6]), np.arctanh(cases), np.arctanh(readers), np.arctanh(both))
    assert (z["low"], z["high"]) == pytest.approx(tuple(np.tanh([t["low"], t["high"]])))
    assert np.isnan(S.readers_random_interval(0.6, cases, readers[:2], both[:, :2])["low"])
    assert np.isnan(S.readers_random_interval(0.6, cases[:2], readers, both[:2])["low"])


def test_or_hillis_floored_equals_the_interval_of_the_per_case_differences():
    rng = np.random.default_rng(4)
    y = 0.6 + rng.normal(0, 0.1, (1, 30, 1)) + rng.normal(0, 0.08, (2, 30, 3)) + np.array([0.05, 0.0])[:, None, None]
    res = mrmc.or_hillis(*mrmc.mean_fom_jackknife(y.transpose(0, 2, 1)), floor=True)
    d = y[0] - y[1]
    direct = S.readers_random_interval(d.mean(), *_mean_jackknife(d))
    pair = res["pairs"][0]
    assert (pair["ci_low"], pair["ci_high"], pair["df"]) == pytest.approx((direct["low"], direct["high"], direct["df"]))
    assert res["floored"] and "kept ≥ 0" in res["method"]


def test_van_dyke_floored_by_hand_from_the_published_variance_components():
    # RJafroc dataset02 (Wilcoxon): MS(T:R) 0.0005510306, Var 0.0008022883, Cov1 0.0003466137, Cov2 0.0003440748,
    # Cov3 0.0002390284, 114 cases, 5 readers. Var − Cov1 − Cov2 + Cov3 = 0.0003506282 < MS(T:R): no floor;
    # the covariance term 5 (Cov2 − Cov3) = 0.000525232 gets K − 1 = 113 df:
    # ddf = (0.0005510306 + 0.000525232)² / (0.0005510306²/4 + 0.000525232²/113) = 14.78 (ddf_H 15.26).
    x, truth = _van_dyke()
    keep = ~np.eye(114, dtype=bool)
    jack = np.stack([_auc(x[..., keep[k]], truth[keep[k]]) for k in range(114)], -1)
    res = mrmc.or_hillis(_auc(x, truth), jack, floor=True)
    ms_tr, case_term = 0.0005510306, 5 * (0.0003440748 - 0.0002390284)
    ddf = (ms_tr + case_term) ** 2 / (ms_tr**2 / 4 + case_term**2 / 113)
    assert ddf == pytest.approx(14.78, abs=0.01)
    assert res["ddf"] == pytest.approx(ddf, rel=1e-6)
    assert res["f"] == pytest.approx(4.456319, abs=5e-7)  # the same denominator
    assert res["p_value"] == pytest.approx(sps.f.sf(4.456319, 1, ddf), abs=1e-6)
    assert mrmc.or_hillis(_auc(x, truth), jack)["ddf"] == pytest.approx(15.25967, abs=5e-6)  # published, unchanged


def test_icc_rule_keeps_the_reader_jackknife_as_it_is_on_r_minus_1_df_by_hand():
    """df="readers" (the ICC(A,1) readers-too interval): v_R + max(v_C − c, 0) on R − 1 df, no floor on v_R.

    By hand: v_R = 2/3 (0² + 0.01² + 0.01²) = 0.000133333; v_C = 3/4 Σ (θ_(−k) − 0.5025)² = 0.00260625; the case
    noise of the readers' jackknife c = 0.000433333 > v_R, so the floored rule would put c on K − 1 df (interval
    [0.3603, 0.6397], ddf 4.15), which covered 92–93 % for the ICC. Here se = sqrt(0.000133333 + 0.00260625 −
    0.000433333) = sqrt(0.00230625) = 0.0480234 and t(0.975, 2) = 4.302653: 0.5 ± 0.2066282.
    """
    both = np.array([[0.50, 0.52, 0.48], [0.46, 0.50, 0.45], [0.55, 0.56, 0.53], [0.49, 0.50, 0.50]])
    cases, readers = [0.50, 0.47, 0.55, 0.49], [0.50, 0.51, 0.49]
    assert S.reader_jackknife_case_noise(both) == pytest.approx(0.000433333, abs=1e-9)
    res = S.readers_random_interval(0.5, cases, readers, both, df="readers")
    assert res["se"] == pytest.approx(0.0480234, abs=1e-7) and res["df"] == 2.0
    assert (res["low"], res["high"]) == pytest.approx((0.2933718, 0.7066282), abs=1e-7)
    floored = S.readers_random_interval(0.5, cases, readers, both)
    assert (floored["low"], floored["high"], floored["df"]) == pytest.approx((0.3602662, 0.6397338, 4.150782), abs=1e-6)
    z = S.readers_random_interval(0.5, cases, readers, both, df="readers", fisher_z=True)
    t = S.readers_random_interval(*np.arctanh([0.5]), *(np.arctanh(v) for v in (cases, readers, both)), df="readers")
    assert (z["low"], z["high"]) == pytest.approx(tuple(np.tanh([t["low"], t["high"]])))
    with pytest.raises(ValueError, match="df must be"):
        S.readers_random_interval(0.5, cases, readers, both, df="hillis")
