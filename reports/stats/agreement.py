"""Agreement between readers (choose-k and rating studies): Fleiss κ from per-case sufficient statistics,
Cohen κ (weighted or not), Krippendorff α, % agreement. Axes and weights as in ``reports.stats``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa


def fleiss_kappa(selections: ArrayLike, *, n_cat: int | None = None) -> float:
    """Fleiss' kappa of an (n_items, n_readers) array of integer categories (0/1 for choose-k)."""
    x = np.asarray(selections).astype(int)
    n_cat = max(2, int(x.max()) + 1) if n_cat is None else n_cat
    table, _ = aggregate_raters(x, n_cat=n_cat)
    return float(_sm_fleiss_kappa(table, method="fleiss"))


class AgreementStats(NamedTuple):
    """Per-case sufficient statistics for Fleiss' kappa and pairwise agreement."""

    agree: np.ndarray  # (n_cases, R, R): items on which readers r and s chose the same category
    counts: np.ndarray  # (n_cases, R, K): items on which reader r chose category k
    n_items: np.ndarray  # (n_cases,): items per case


def agreement_stats(ratings: ArrayLike, *, n_cat: int | None = None) -> AgreementStats:
    """Sufficient statistics of an (n_cases, n_items_per_case, n_readers) integer array."""
    x = np.asarray(ratings).astype(int)
    n_cat = max(2, int(x.max()) + 1) if n_cat is None else n_cat
    onehot = np.stack([(x == c) for c in range(n_cat)]).astype(np.float64)  # (K, C, M, R)
    agree = sum(np.matmul(oh.transpose(0, 2, 1), oh) for oh in onehot)
    counts = onehot.sum(axis=2).transpose(1, 2, 0)
    return AgreementStats(agree, counts, np.full(x.shape[0], float(x.shape[1])))


def _reader_pair_weights(reader_weights: np.ndarray) -> np.ndarray:
    """Weights of ordered pairs of distinct readers (a reader drawn twice is not paired with itself)."""
    w = reader_weights[..., :, None] * reader_weights[..., None, :]
    return w * (1.0 - np.eye(reader_weights.shape[-1]))


def fleiss_kappa_from_stats(
    stats: AgreementStats, case_weights: ArrayLike | None = None, reader_weights: ArrayLike | None = None
) -> np.ndarray | float:
    """Fleiss' kappa from per-case stats; weights (..., n_cases)/(..., R) broadcast to a batch."""
    w = np.ones(len(stats.n_items)) if case_weights is None else np.asarray(case_weights, float)
    v = np.ones(stats.agree.shape[-1]) if reader_weights is None else np.asarray(reader_weights, float)
    n = w @ stats.n_items
    agree = np.tensordot(w, stats.agree, axes=(-1, 0))
    pairs = _reader_pair_weights(v)
    p_bar = (pairs * agree).sum((-2, -1)) / (pairs.sum((-2, -1)) * n)
    counts = np.tensordot(w, stats.counts, axes=(-1, 0))  # (..., R, K)
    p_cat = np.einsum("...r,...rk->...k", v, counts) / (n * v.sum(-1))[..., None]
    p_e = (p_cat**2).sum(-1)
    kappa = (p_bar - p_e) / (1.0 - p_e)
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def mean_pairwise_agreement(stats: AgreementStats) -> float:
    """Share of items on which two distinct readers agree, averaged over reader pairs."""
    pairs = _reader_pair_weights(np.ones(stats.agree.shape[-1]))
    return float((pairs * stats.agree.sum(0)).sum() / (pairs.sum() * stats.n_items.sum()))


def _disagreement_weights(n_cat: int, weights: str | None) -> np.ndarray:
    """(K, K) disagreement weights: 0/1, |i - j| or (i - j)^2."""
    diff = np.subtract.outer(np.arange(n_cat), np.arange(n_cat))
    if weights is None:
        return (diff != 0).astype(float)
    if weights == "linear":
        return np.abs(diff).astype(float)
    if weights == "quadratic":
        return diff.astype(float) ** 2
    raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")


def kappa_from_confusion(confusion: ArrayLike, *, weights: str | None = None) -> np.ndarray | float:
    """Cohen's kappa of (..., K, K) confusion matrices (rows: rater a, columns: rater b)."""
    conf = np.asarray(confusion, float)
    w = _disagreement_weights(conf.shape[-1], weights)
    n = conf.sum((-2, -1))
    expected = conf.sum(-1)[..., :, None] * conf.sum(-2)[..., None, :] / n[..., None, None]
    kappa = 1.0 - (w * conf).sum((-2, -1)) / (w * expected).sum((-2, -1))
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def _codes(values: np.ndarray, labels: ArrayLike | None) -> tuple[np.ndarray, int]:
    """Map values to 0..K-1 codes over the sorted label set."""
    labels = np.unique(values) if labels is None else np.asarray(labels)
    codes = np.searchsorted(labels, values)
    if np.any(codes >= len(labels)) or np.any(labels[np.minimum(codes, len(labels) - 1)] != values):
        raise ValueError("ratings contain values that are not in labels")
    return codes, len(labels)


def confusion_matrix(a: ArrayLike, b: ArrayLike, *, labels: ArrayLike | None = None) -> np.ndarray:
    """(K, K) confusion counts of two raters over the sorted union of their labels."""
    a, b = np.ravel(a), np.ravel(b)
    codes, k = _codes(np.concatenate([a, b]), labels)
    return np.bincount(codes[: len(a)] * k + codes[len(a) :], minlength=k * k).reshape(k, k).astype(float)


def cohen_kappa(a: ArrayLike, b: ArrayLike, *, weights: str | None = None, labels: ArrayLike | None = None) -> float:
    """Cohen's kappa (optionally linear/quadratic weighted), as sklearn.metrics.cohen_kappa_score."""
    return kappa_from_confusion(confusion_matrix(a, b, labels=labels), weights=weights)


def pairwise_cohen_kappa(
    ratings: ArrayLike, *, weights: str | None = None, labels: ArrayLike | None = None
) -> np.ndarray:
    """(R, R) matrix of Cohen's kappa between every pair of readers of an (n_items, R) array."""
    x = np.asarray(ratings)
    codes, k = _codes(x.ravel(), labels)
    onehot = np.eye(k)[codes.reshape(x.shape)]  # (N, R, K)
    conf = np.einsum("nrk,nsl->rskl", onehot, onehot, optimize=True)
    return kappa_from_confusion(conf, weights=weights)


def _krippendorff_delta2(values: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    """Squared difference function of Krippendorff's alpha for the sorted value domain."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ratio":
        s = np.add.outer(values, values)
        return np.divide(np.subtract.outer(values, values), s, out=np.zeros_like(s), where=s != 0) ** 2
    if level == "ordinal":
        cum = np.cumsum(n_v)
        idx = np.arange(len(n_v))
        lo, hi = np.minimum.outer(idx, idx), np.maximum.outer(idx, idx)
        between = cum[hi] - cum[lo] + n_v[lo]
        return (between - (n_v[lo] + n_v[hi]) / 2.0) ** 2
    raise ValueError(f"level must be nominal, ordinal, interval or ratio, not {level!r}")


def krippendorff_alpha(data: ArrayLike, *, level: str = "nominal") -> float:
    """Krippendorff's alpha of an (n_items, n_readers) array; NaN marks a missing rating."""
    x = np.asarray(data, float)
    present = ~np.isnan(x)
    values = np.unique(x[present])
    codes = np.searchsorted(values, np.where(present, x, values[0]))
    counts = (np.eye(len(values))[codes] * present[..., None]).sum(1)  # (U, V)
    m = counts.sum(1)
    counts, m = counts[m >= 2], m[m >= 2]
    scaled = counts / (m - 1.0)[:, None]
    coinc = scaled.T @ counts - np.diag(scaled.sum(0))
    n_v = coinc.sum(0)
    n = n_v.sum()
    d2 = _krippendorff_delta2(values, n_v, level)
    d_obs = (coinc * d2).sum() / n
    d_exp = (np.outer(n_v, n_v) * d2).sum() / (n * (n - 1.0))
    return float(1.0 - d_obs / d_exp)


def percent_agreement(a: ArrayLike, b: ArrayLike) -> float:
    """Percentage (0-100) of items on which a and b agree, pooled over all items."""
    return float(100.0 * np.mean(np.asarray(a) == np.asarray(b)))


def reader_agreement(selections: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Per-reader % agreement (R,) of (..., R) selections with a (...) reference, pooled over items."""
    sel = np.asarray(selections)
    ref = np.asarray(reference)[..., None]
    return 100.0 * (sel == ref).reshape(-1, sel.shape[-1]).mean(0)


def paired_confusion(a: ArrayLike, b: ArrayLike, *, n_cat: int = 2) -> np.ndarray:
    """Per-case (n_cases, K, K) confusion counts of two (n_cases, n_items) integer label arrays."""
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    flat = (a * n_cat + b).reshape(a.shape[0], -1)
    offsets = np.arange(a.shape[0])[:, None] * n_cat * n_cat
    counts = np.bincount((flat + offsets).ravel(), minlength=a.shape[0] * n_cat * n_cat)
    return counts.reshape(a.shape[0], n_cat, n_cat).astype(float)
