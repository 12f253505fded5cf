"""Readers as a random effect: the Obuchowski–Rockette (OR) analysis with Hillis' denominator degrees of freedom.

Arrays in, numbers out (no Django), like reports.stats. A figure of merit (FOM) θ_ij is computed for every
method (treatment) i and reader j; its case-sampling covariances are estimated by the jackknife over cases;
the method effect is tested with readers *and* cases random (RRRC), as RJafroc's ``StSignificanceTesting``
(method "OR") and iMRMC do:

* Obuchowski & Rockette (1995), Hillis, Obuchowski, Schartz & Berbaum (2005);
* Hillis (2007), "A comparison of denominator degrees of freedom methods for multiple observer ROC
  analysis", Stat Med 26:596–619: ``ddf_H``;
* Hillis (2014), "A marginal-mean ANOVA approach for analyzing multireader multicase radiological imaging
  data", Stat Med 33:330–360.

With I methods, J readers, K cases and the jackknife covariances Var, Cov1 (same reader, different
methods), Cov2 (same method, different readers), Cov3 (both different):

    MS(T)  = J/(I−1) Σ_i (θ_i· − θ_··)²
    MS(TR) = 1/((I−1)(J−1)) Σ_ij (θ_ij − θ_i· − θ_·j + θ_··)²
    den    = MS(TR) + J·max(Cov2 − Cov3, 0)
    F      = MS(T)/den  on (I − 1, ddf_H) degrees of freedom, ddf_H = den² (I−1)(J−1) / MS(TR)²
    θ_i· − θ_i'·  ±  t(ddf_H) · sqrt(2 den / J)

On the Van Dyke data (RJafroc ``dataset02``, Wilcoxon AUC) this gives F = 4.456, ddf_H = 15.26,
p = 0.0517 (tests/stats/test_mrmc.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

OR_METHOD = (
    "Obuchowski–Rockette, readers and cases random, jackknife covariances over cases, "
    "Hillis (2007) denominator degrees of freedom"
)
OR_METHOD_FLOORED = (
    "Obuchowski–Rockette, readers and cases random, jackknife covariances over cases, the method × reader "
    "variance component kept ≥ 0 (MS(TR) ≥ Var − Cov1 − Cov2 + Cov3), Satterthwaite denominator degrees of "
    "freedom with the case terms on K − 1 (Hillis' ddf_H when neither applies and K is large)"
)


def mean_fom_jackknife(scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """FOM = mean over cases of (I, J, K) per-case scores: (I, J) FOMs and (I, J, K) leave-one-case-out FOMs."""
    y = np.asarray(scores, float)
    k = y.shape[-1]
    fom = y.mean(-1)
    return fom, (k * fom[..., None] - y) / (k - 1)


def or_covariances(jackknife: ArrayLike) -> dict[str, float]:
    """Var, Cov1, Cov2, Cov3 from (I, J, K) jackknife FOMs: (K−1)/K Σ_k products of deviations, averaged."""
    jk = np.asarray(jackknife, float)
    n_t, n_r, k = jk.shape
    dev = (jk - jk.mean(-1, keepdims=True)).reshape(n_t * n_r, k)
    cov = (k - 1) / k * dev @ dev.T
    t = np.repeat(np.arange(n_t), n_r)
    r = np.tile(np.arange(n_r), n_t)
    same_t, same_r = t[:, None] == t[None, :], r[:, None] == r[None, :]

    def mean(mask: np.ndarray) -> float:
        return float(cov[mask].mean()) if mask.any() else float("nan")

    return {
        "var": mean(same_t & same_r),
        "cov1": mean(~same_t & same_r),
        "cov2": mean(same_t & ~same_r),
        "cov3": mean(~same_t & ~same_r),
    }


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Satterthwaite's degrees of freedom of a sum of independent mean-square terms (value, df)."""
    total = sum(v for v, _ in terms)
    denom = sum(v**2 / df for v, df in terms if v > 0)
    return total**2 / denom if denom > 0 else float("inf")


def or_hillis(fom: ArrayLike, jackknife: ArrayLike, *, level: float = 0.95, floor: bool = False) -> dict:
    """OR analysis (RRRC) of (I, J) FOMs with their (I, J, K) jackknife values: F test and pairwise differences.

    floor: keep the method × reader variance component ≥ 0, i.e. MS(TR) floored at its expectation without it,
    Var − Cov1 − Cov2 + Cov3 (a case quantity, on K − 1 degrees of freedom), and give the covariance term
    J·max(Cov2 − Cov3, 0) its K − 1 degrees of freedom too: ddf = den² / Σ term²/df (Satterthwaite). Without it
    (the published analysis, RJafroc's numbers) Hillis' ddf_H on MS(TR) alone covered 92.7–94.5 % with 3 readers
    and 30 cases (benchmarks/bench_coverage.py): a small MS(TR) gives both a small denominator and many
    degrees of freedom. ``floor`` is what the report uses (``floor=True``: ``"floored": true`` in the result).
    """
    theta = np.asarray(fom, float)
    n_t, n_r = theta.shape
    if n_t < 2 or n_r < 2:
        raise ValueError("the OR analysis needs at least two methods and two readers")
    n_c = int(np.shape(jackknife)[-1])
    cov = or_covariances(jackknife)
    t_mean, r_mean, grand = theta.mean(1), theta.mean(0), theta.mean()
    ms_t = n_r * ((t_mean - grand) ** 2).sum() / (n_t - 1)
    ms_tr = ((theta - t_mean[:, None] - r_mean[None, :] + grand) ** 2).sum() / ((n_t - 1) * (n_r - 1))
    case_term = n_r * max(cov["cov2"] - cov["cov3"], 0.0)
    if floor:
        no_tr = cov["var"] - cov["cov1"] - cov["cov2"] + cov["cov3"]  # E[MS(TR)] without method × reader variance
        tr_term = (ms_tr, (n_t - 1) * (n_r - 1)) if ms_tr >= no_tr else (max(no_tr, 0.0), n_c - 1)
        den = tr_term[0] + case_term
        ddf = _satterthwaite([tr_term, (case_term, n_c - 1)])
    else:
        den = ms_tr + case_term
        ddf = den**2 * (n_t - 1) * (n_r - 1) / ms_tr**2 if ms_tr > 0 else float("inf")
    f_stat = ms_t / den if den > 0 else float("nan")
    se = float(np.sqrt(2.0 * den / n_r))
    q = sps.t.ppf(0.5 + level / 2.0, ddf)
    pairs = []
    for a in range(n_t):
        for b in range(a + 1, n_t):
            diff = float(t_mean[a] - t_mean[b])
            t_stat = diff / se if se > 0 else float("nan")
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "difference": diff,
                    "se": se,
                    "t": t_stat,
                    "df": float(ddf),
                    "p_value": float(2.0 * sps.t.sf(abs(t_stat), ddf)) if se > 0 else float("nan"),
                    "ci_low": float(diff - q * se),
                    "ci_high": float(diff + q * se),
                }
            )
    return {
        "fom": theta.tolist(),
        "method_means": t_mean.tolist(),
        "ms_t": float(ms_t),
        "ms_tr": float(ms_tr),
        **cov,
        "f": float(f_stat),
        "ndf": n_t - 1,
        "ddf": float(ddf),
        "p_value": float(sps.f.sf(f_stat, n_t - 1, ddf)) if den > 0 else float("nan"),
        "pairs": pairs,
        "level": level,
        "n_readers": n_r,
        "n_cases": n_c,
        "floored": floor,
        "method": OR_METHOD_FLOORED if floor else OR_METHOD,
    }


OR_MEAN_METHOD = (
    "mean over readers and cases, readers and cases random: Obuchowski–Rockette single-method t interval "
    "(jackknife Cov2 over cases, Hillis (2007) degrees of freedom)"
)


def or_mean_ci(scores: ArrayLike, *, level: float = 0.95, floor: bool = False) -> dict:
    """t interval of the mean over readers and cases of (K cases, J readers) per-case scores, readers and cases random.

    The single-method OR analysis (RJafroc's per-treatment RRRC interval, Hillis 2007): FOM θ_j = the reader's
    mean over cases, MS(R) = Σ_j (θ_j − θ̄)²/(J − 1), Cov2 = the jackknife covariance of two readers' FOMs,

        θ̄ ± t(ddf) · sqrt((MS(R) + J·max(Cov2, 0)) / J),   ddf = (MS(R) + J·max(Cov2, 0))² (J − 1) / MS(R)².

    For a mean FOM, (MS(R) + J·Cov2)/J estimates σ²_reader/J + σ²_case/K + σ²_reader×case/(JK) without bias.
    Cases with a NaN score are left out. floor: MS(R) floored at Var − Cov2 (the reader variance component kept
    ≥ 0), both case terms on K − 1 degrees of freedom, as ``or_hillis(floor=True)``; equal to
    ``stats.readers_random_interval`` of the mean, which the report uses.
    """
    y = np.asarray(scores, float)
    y = y[~np.isnan(y).any(axis=1)]
    n_c, n_r = y.shape
    if n_r < 2 or n_c < 3:
        raise ValueError("the OR interval needs at least two readers and three cases")
    fom, jack = mean_fom_jackknife(y.T[None])
    theta = fom[0]
    cov = or_covariances(jack)
    cov2 = cov["cov2"]
    ms_r = float(theta.var(ddof=1))
    if floor:
        no_r = cov["var"] - cov2  # E[MS(R)] without reader variance
        r_term = (ms_r, n_r - 1) if ms_r >= no_r else (max(no_r, 0.0), n_c - 1)
        den = r_term[0] + n_r * max(cov2, 0.0)
        ddf = _satterthwaite([r_term, (n_r * max(cov2, 0.0), n_c - 1)])
    else:
        den = ms_r + n_r * max(cov2, 0.0)
        ddf = den**2 * (n_r - 1) / ms_r**2 if ms_r > 0 else float("inf")
    se = float(np.sqrt(den / n_r))
    q = sps.t.ppf(0.5 + level / 2.0, ddf)
    mean = float(theta.mean())
    return {
        "estimate": mean,
        "low": mean - q * se,
        "high": mean + q * se,
        "se": se,
        "df": float(ddf),
        "ms_r": ms_r,
        "cov2": float(cov2),
        "n_cases": n_c,
        "n_readers": n_r,
        "level": level,
        "method": OR_MEAN_METHOD,
    }


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (as statsmodels' multipletests(method='holm')); NaN stays NaN."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
