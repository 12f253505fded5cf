"""Rating studies: intraclass correlations (Shrout & Fleiss / McGraw & Wong), the ICC bootstrap statistic with
its readers-too rule, and the correlation of ratings with a method's distances."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

_ICC_ALIASES = {
    "ICC(1,1)": "ICC1", "ICC(A,1)": "ICC2", "ICC(C,1)": "ICC3",
    "ICC(1,k)": "ICC1k", "ICC(A,k)": "ICC2k", "ICC(C,k)": "ICC3k",
}  # fmt: skip


def icc(ratings: ArrayLike, *, kind: str = "ICC2") -> float:
    """Shrout & Fleiss ICC (ICC1/2/3[k]; pingouin names accepted) of a complete (n_items, R) array."""
    x = np.asarray(ratings, float)
    if np.isnan(x).any():
        raise ValueError("icc needs a complete ratings matrix (no NaN)")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_total = ((x - grand) ** 2).sum()
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    msw = (ss_total - ss_rows) / (n * (k - 1))
    formulas = {
        "ICC1": (msr - msw) / (msr + (k - 1) * msw),
        "ICC2": (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
        "ICC3": (msr - mse) / (msr + (k - 1) * mse),
        "ICC1k": (msr - msw) / msr,
        "ICC2k": (msr - mse) / (msr + (msc - mse) / n),
        "ICC3k": (msr - mse) / msr,
    }
    name = _ICC_ALIASES.get(kind, kind)
    if name not in formulas:
        raise ValueError(f"unknown ICC kind {kind!r}; use one of {sorted(formulas)}")
    return float(formulas[name])


def icc_statistic(ratings: ArrayLike, *, kind: str = "ICC2") -> Callable[..., float]:
    """Bootstrap statistic ``stat(item_idx[, reader_idx])`` (non-vectorised) of an ICC on an (n_items, R) array.

    With readers resampled, a reader drawn several times counts once: the ICC of the *distinct* drawn
    readers. Copies of a column would be raters in perfect agreement (three copies:
    ICC = 1 exactly), which pins the interval's upper bound at 1. Fewer than two distinct readers: NaN.
    """
    x = np.asarray(ratings, float)

    def stat(idx: np.ndarray, ridx: np.ndarray | None = None) -> float:
        if ridx is None:
            return icc(x[idx], kind=kind)
        distinct = np.unique(ridx)
        return icc(x[np.ix_(idx, distinct)], kind=kind) if len(distinct) >= 2 else float("nan")

    return stat


def distance_rating_correlation(ratings: ArrayLike, distances: ArrayLike) -> dict:
    """Spearman and Pearson correlation of ratings (items, or items x readers: mean) vs model distances."""
    r = np.asarray(ratings, float)
    r = np.nanmean(r, axis=1) if r.ndim == 2 else r
    d = np.asarray(distances, float)
    ok = ~(np.isnan(r) | np.isnan(d))
    spearman = sps.spearmanr(r[ok], d[ok])
    pearson = sps.pearsonr(r[ok], d[ok])
    return {
        "spearman": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
        "pearson": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "n": int(ok.sum()),
    }
