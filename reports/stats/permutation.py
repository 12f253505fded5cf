"""p-values: nDCG against random catalogue orders, the paired sign-flip test (exact up to
``EXACT_MAX_CASES`` cases, else Monte Carlo with its standard error and floor), the paired t-test."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from reports.stats.ranking import ndcg_at, relevance_from_ranks
from retrieval.ml.metrics import discounts  # the one nDCG (numpy only)
from retrieval.ml.metrics import gain as _gain

EXACT_MAX_CASES = 15  # up to 2^15 sign patterns: the sign-flip test enumerates them all


def monte_carlo_p(p: float, n_resamples: int) -> dict:
    """What a simulated p-value (1 + #as-extreme)/(1 + B) comes with: its Monte Carlo s.e. and its floor 1/(B+1)."""
    return {
        "method": "monte carlo",
        "mc_se": float(np.sqrt(p * (1.0 - p) / n_resamples)) if n_resamples else None,
        "p_floor": 1.0 / (n_resamples + 1),
    }


def _hits(null: np.ndarray, observed: float, alternative: str, center: float = 0.0) -> np.ndarray:
    """Which null values are at least as extreme as observed; two-sided measures distance from center."""
    tol = 1e-12 * max(1.0, abs(observed))
    if alternative == "greater":
        hits = null >= observed - tol
    elif alternative == "less":
        hits = null <= observed + tol
    elif alternative == "two-sided":
        hits = np.abs(null - center) >= abs(observed - center) - tol
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    return hits


def _p_value(null: np.ndarray, observed: float, alternative: str, center: float = 0.0) -> float:
    """Monte Carlo p-value (1 + #as-extreme) / (1 + n): never below 1/(n + 1)."""
    return float((1 + _hits(null, observed, alternative, center).sum()) / (1 + len(null)))


def permutation_test_vs_random(
    method_ranks: ArrayLike,
    reference_ranks: ArrayLike,
    *,
    p: int = 10,
    gain: str = "exp",
    n_resamples: int = 2000,
    seed: int = 0,
    alternative: str = "greater",
    batch_size: int = 100,
    observed: float | None = None,
) -> dict:
    """Mean nDCG@p of a method vs random catalogue orders (each case's order permuted independently).

    observed: the statistic tested (default: the mean nDCG@p of ``method_ranks``; the report passes the
    tie-averaged mean when the headline nDCG is tie-averaged).
    """
    ref = np.asarray(reference_ranks)
    if observed is None:
        observed = float(np.mean(ndcg_at(method_ranks, ref, p, gain=gain)))
    g = _gain(relevance_from_ranks(ref), gain)
    p = min(p, ref.shape[-1])
    disc = discounts(p)
    idcg = -np.sort(-g, axis=-1)[..., :p] @ disc
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, n_resamples, batch_size):
        b = min(batch_size, n_resamples - start)
        perm = np.argsort(rng.random((b,) + g.shape), axis=-1)[..., :p]
        dcg = np.take_along_axis(np.broadcast_to(g, perm.shape[:-1] + g.shape[-1:]), perm, axis=-1) @ disc
        null.append((dcg / idcg).reshape(b, -1).mean(-1))
    null = np.concatenate(null)
    p_value = _p_value(null, observed, alternative, center=float(null.mean()))
    return {
        "statistic": observed,
        "null_mean": float(null.mean()),
        "p_value": p_value,
        "p": p,
        "gain": gain,
        "alternative": alternative,
        "n_resamples": n_resamples,
        "seed": seed,
        **monte_carlo_p(p_value, n_resamples),
    }


def paired_permutation_test(
    a: ArrayLike,
    b: ArrayLike,
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    alternative: str = "two-sided",
    batch_size: int = 1000,
) -> dict:
    """Sign-flip permutation test of the mean per-case difference a - b (method vs method).

    Up to ``EXACT_MAX_CASES`` cases every one of the 2^n sign patterns is enumerated and the p-value is
    exact (#as-extreme / 2^n); beyond, ``n_resamples`` random patterns give the Monte Carlo p-value
    (1 + #as-extreme)/(1 + B), with its standard error and its floor 1/(B + 1).
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[~np.isnan(d)]
    observed = float(d.mean()) if len(d) else float("nan")
    out = {"statistic": observed, "n": len(d), "alternative": alternative, "n_resamples": n_resamples, "seed": seed}
    if not len(d):
        return out | {"p_value": float("nan"), "method": "exact", "n_patterns": 0, "mc_se": None}
    if len(d) <= EXACT_MAX_CASES:
        signs = 1.0 - 2.0 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        hits = _hits(signs @ d / len(d), observed, alternative)
        return out | {"p_value": float(hits.mean()), "method": "exact", "n_patterns": 2 ** len(d), "mc_se": None}
    rng = np.random.default_rng(seed)
    null = []
    for start in range(0, n_resamples, batch_size):
        signs = rng.choice([-1.0, 1.0], size=(min(batch_size, n_resamples - start), len(d)))
        null.append(signs @ d / len(d))
    p_value = _p_value(np.concatenate(null), observed, alternative)
    return out | {"p_value": p_value, "n_patterns": 2 ** len(d), **monte_carlo_p(p_value, n_resamples)}


def paired_ttest(a: ArrayLike, b: ArrayLike, *, alternative: str = "two-sided") -> dict:
    """Paired t-test of per-case values (scipy.stats.ttest_rel), for comparison with the permutation test."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    res = sps.ttest_rel(a[ok], b[ok], alternative=alternative)
    return {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "df": int(ok.sum() - 1),
        "mean_difference": float(np.mean(a[ok] - b[ok])),
        "n": int(ok.sum()),
        "alternative": alternative,
    }
