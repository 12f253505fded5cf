"""Confidence intervals: the case (cluster) bootstrap, optionally readers too, percentile or BCa at
Hesterberg's small-sample expanded level, and the vectorised statistics it resamples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from reports.stats.agreement import AgreementStats, fleiss_kappa_from_stats, kappa_from_confusion


def _draw_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) counts of how often each of n units is drawn in size resamples with replacement."""
    idx = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(float)


def _indices_from_counts(counts: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """Unit indices of one resample given per-cluster draw counts."""
    return np.concatenate([np.tile(members[g], int(c)) for g, c in enumerate(counts) if c])


def bootstrap_ci(
    statistic: Callable[..., ArrayLike],
    n_cases: int,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    cluster: ArrayLike | None = None,
    n_readers: int | None = None,
    vectorized: bool = True,
    batch_size: int = 500,
    method: str = "percentile",
) -> dict:
    """Bootstrap CI resampling cases (or clusters of units), optionally readers too.

    vectorized: ``statistic(case_weights[, reader_weights])`` gets (b, n_cases)[, (b, n_readers)]
    draw counts and returns (b,) values; otherwise it gets one resample's unit (and reader) indices.
    cluster: a label per unit; whole clusters (e.g. the case of each item) are resampled together.
    method: ``'percentile'``, or ``'bca-expanded'``: the BCa interval (Efron 1987; bias correction z0
    from the share of resamples below the estimate, acceleration from the leave-one-case-out
    jackknife) at the small-sample expanded level of Hesterberg (2015): z_{α/2} replaced by
    sqrt(n/(n − 1)) t_{α/2, n−1}, n = the number of cases.
    """
    if method not in ("percentile", "bca-expanded"):
        raise ValueError(f"method must be percentile or bca-expanded, not {method!r}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n_cases) if cluster is None else np.unique(np.asarray(cluster), return_inverse=True)[1]
    n_groups = int(labels.max()) + 1
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])
    full = [np.ones((1, n_cases))] + ([np.ones((1, n_readers))] if n_readers else [])
    if vectorized:
        estimate = float(np.asarray(statistic(*full))[0])
    else:
        estimate = float(statistic(*[np.arange(f.shape[1]) for f in full]))
    values = []
    for start in range(0, n_resamples, batch_size):
        b = min(batch_size, n_resamples - start)
        group_counts = _draw_counts(rng, n_groups, b)
        reader_counts = _draw_counts(rng, n_readers, b) if n_readers else None
        if vectorized:
            draws = [group_counts[:, labels]] + ([reader_counts] if n_readers else [])
            values.append(np.asarray(statistic(*draws), float))
            continue
        for i in range(b):
            args = [_indices_from_counts(group_counts[i], members)]
            if n_readers:
                args.append(np.repeat(np.arange(n_readers), reader_counts[i].astype(int)))
            values.append(np.atleast_1d(float(statistic(*args))))
    values = np.concatenate(values)
    tail = 100.0 * (1.0 - level) / 2.0
    if method == "percentile":
        low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    else:
        jack = _jackknife(statistic, labels, members, n_readers, vectorized)
        low, high = _bca_expanded(values, estimate, jack, level)
    return {
        "estimate": estimate,
        "low": float(low),
        "high": float(high),
        "level": level,
        "n_resamples": n_resamples,
        "n_failed": int(np.isnan(values).sum()),
        "seed": seed,
        "method": method,
        "resampled": ("clusters" if cluster is not None else "cases") + ("+readers" if n_readers else ""),
    }


def _jackknife(
    statistic: Callable[..., ArrayLike],
    labels: np.ndarray,
    members: list[np.ndarray],
    n_readers: int | None,
    vectorized: bool,
) -> np.ndarray:
    """(n_groups,) leave-one-case(cluster)-out values of the statistic, every reader kept."""
    n_groups = len(members)
    if vectorized:
        keep = 1.0 - np.eye(n_groups)
        args = [keep[:, labels]] + ([np.ones((n_groups, n_readers))] if n_readers else [])
        return np.asarray(statistic(*args), float)
    everyone = [np.arange(n_readers)] if n_readers else []
    return np.array([float(statistic(np.flatnonzero(labels != g), *everyone)) for g in range(n_groups)])


def _bca_expanded(values: np.ndarray, estimate: float, jack: np.ndarray, level: float) -> tuple[float, float]:
    """BCa percentiles (bias correction z0, jackknife acceleration a) at Hesterberg's expanded level."""
    v = values[~np.isnan(values)]
    n = len(jack)
    if not len(v) or n < 3 or np.isnan(estimate):
        return float("nan"), float("nan")
    tie = np.abs(v - estimate) <= 1e-12 * max(1.0, abs(estimate))  # equal up to rounding: half below
    below = (np.sum((v < estimate) & ~tie) + 0.5 * np.sum(tie)) / len(v)
    z0 = sps.norm.ppf(np.clip(below, 0.5 / len(v), 1 - 0.5 / len(v)))
    d = np.nanmean(jack) - jack
    d = d[~np.isnan(d)]
    denom = 6.0 * (d**2).sum() ** 1.5
    a = (d**3).sum() / denom if denom > 0 else 0.0
    z = np.sqrt(n / (n - 1.0)) * sps.t.ppf(0.5 + level / 2.0, n - 1)
    tails = [sps.norm.cdf(z0 + (z0 + q) / (1 - a * (z0 + q))) for q in (-z, z)]
    low, high = np.percentile(v, [100.0 * tails[0], 100.0 * tails[1]])
    return float(low), float(high)


def mean_statistic(per_case_values: ArrayLike) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised bootstrap statistic: weighted mean of per-case values (e.g. nDCG)."""
    x = np.asarray(per_case_values, float)
    return lambda w: (w @ x) / w.sum(-1)


def fleiss_statistic(stats: AgreementStats) -> Callable[..., np.ndarray]:
    """Vectorised bootstrap statistic: Fleiss' kappa from case (and optional reader) weights."""
    return lambda w, v=None: fleiss_kappa_from_stats(stats, w, v)


def kappa_statistic(per_case_confusion: ArrayLike) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised bootstrap statistic: Cohen's kappa pooled over items of the resampled cases."""
    conf = np.asarray(per_case_confusion, float)
    return lambda w: kappa_from_confusion(np.tensordot(w, conf, axes=(-1, 0)))


READERS_RANDOM_RULE = (  # the ICC(A,1)'s readers-too interval (its readers_rule)
    "readers random (≥ 3 readers), on the Fisher z scale: jackknife over cases and over readers, variance = the "
    "readers' jackknife variance as it is + the case variance not already in it (kept ≥ 0), t on R − 1 degrees "
    "of freedom (Obuchowski–Rockette's original df)"
)


def reader_jackknife_case_noise(leave_one_out_both: ArrayLike) -> float:
    """The case-sampling part of the readers' jackknife variance, by the jackknife over cases.

    leave_one_out_both: (K, R) values of the statistic without case k and without reader j. The readers'
    jackknife variance v_R = (R − 1)/R Σ_j (θ_(−j) − θ̄)² varies with the cases as well as with the readers: its
    expectation is the reader part plus c = (R − 1)/R Σ_j Var_cases(θ_(−j) − θ̄), estimated here by the
    jackknife over cases, (K − 1)/K Σ_k (d_(k)j − d̄_(·)j)² with d_(k)j = θ_(−k,−j) − mean_j θ_(−k,−j).
    For a mean over readers c = (Var − Cov2)/R in Obuchowski–Rockette's terms.
    """
    lo = np.asarray(leave_one_out_both, float)
    k, r = lo.shape
    d = lo - lo.mean(axis=1, keepdims=True)
    var_cases = (k - 1) / k * ((d - d.mean(axis=0)) ** 2).sum(axis=0)
    return float((r - 1) / r * var_cases.sum())


def _jackknife_variance(values: np.ndarray) -> float:
    n = len(values)
    return float((n - 1) / n * ((values - values.mean()) ** 2).sum())


def readers_random_interval(
    estimate: float,
    leave_one_case_out: ArrayLike,
    leave_one_reader_out: ArrayLike,
    leave_one_out_both: ArrayLike,
    *,
    level: float = 0.95,
    fisher_z: bool = False,
    df: str = "satterthwaite",
) -> dict:
    """Interval of a statistic over readers and cases with both random, from the jackknife over each.

    With v_C the jackknife variance over the K cases (readers fixed), v_R the jackknife variance over the R
    readers and c its case-sampling part (``reader_jackknife_case_noise``):

        reader term T_R = max(v_R, c)        (the reader variance component v_R − c kept ≥ 0)
        case term   T_C = max(v_C − c, 0)
        θ̂ ± t(ddf) · sqrt(T_R + T_C),   ddf = (T_R + T_C)² / (T_R²/df_R + T_C²/(K − 1))   (Satterthwaite)

    df_R = R − 1, or K − 1 where the floor c binds (then the term is a case quantity). For a mean over readers,
    T_R + T_C is the Obuchowski–Rockette variance MS(R)/R + max(Cov2, 0) with MS(R) floored at its value without
    reader variance, Var − Cov2 (``mrmc.or_mean_ci(floor=True)``, tests/stats/test_readers_random_interval.py).
    Hillis' plug-in ddf without the floor covered 92–93 % with 3 readers and 30 cases, adding the whole reader
    jackknife to the case interval 98–99 % (benchmarks/bench_coverage.py).
    df="readers" (``READERS_RANDOM_RULE``, the ICC): no floor on the reader term, T_R = v_R (it is ≥ 0 and holds c
    already), T_C = max(v_C − c, 0), and t on R − 1 df, the original Obuchowski–Rockette (1995) df for one method.
    With 3 readers v_R has 2 df: it falls below c in ~15 % of studies, and there the floor on K − 1 df covered
    63 % of the ICC(A,1) interval (92–93 % overall); R − 1 df without the floor covers 94.5–95.5 %
    (benchmarks/bench_coverage.py; Satterthwaite df without the floor 93.3–94.5 %).
    fisher_z: everything on the arctanh scale, the interval transformed back (a correlation such as the ICC).
    """
    if df not in ("satterthwaite", "readers"):
        raise ValueError(f"df must be 'satterthwaite' or 'readers', not {df!r}")
    values = [np.asarray(v, float) for v in (estimate, leave_one_case_out, leave_one_reader_out, leave_one_out_both)]
    nan = {"low": float("nan"), "high": float("nan"), "se": float("nan"), "df": float("nan")}
    k, r = values[3].shape if values[3].ndim == 2 else (0, 0)
    if r < 3 or k < 3 or any(np.isnan(v).any() for v in values):
        return nan
    if fisher_z:
        edge = 1.0 - 1e-12
        values = [np.arctanh(np.clip(v, -edge, edge)) for v in values]
    est, cases, readers, both = values
    v_c, v_r, c = _jackknife_variance(cases), _jackknife_variance(readers), reader_jackknife_case_noise(both)
    if df == "readers":
        t_r, df_r = v_r, r - 1.0
    else:
        t_r, df_r = (v_r, r - 1.0) if v_r >= c else (c, k - 1.0)
    t_c = max(v_c - c, 0.0)
    total = t_r + t_c
    if total <= 0:
        return {"low": float(estimate), "high": float(estimate), "se": 0.0, "df": float("inf")}
    ddf = r - 1.0 if df == "readers" else total**2 / (t_r**2 / df_r + t_c**2 / (k - 1.0))
    half = sps.t.ppf(0.5 + level / 2.0, ddf) * np.sqrt(total)
    low, high = float(est - half), float(est + half)
    if fisher_z:
        low, high = float(np.tanh(low)), float(np.tanh(high))
    return {"low": low, "high": high, "se": float(np.sqrt(total)), "df": float(ddf)}
