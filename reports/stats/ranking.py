"""Ranking studies: ranks from distances (ties broken by the lower catalogue position), nDCG@p (tie-broken
or tie-averaged), its exact random-order expectation, Kendall τ_b and Spearman ρ per case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from retrieval.ml.metrics import discounts, ndcg_from_gains  # the one nDCG (numpy only)
from retrieval.ml.metrics import gain as _gain

TIES_RULE = "equal distances are ordered by the lower catalogue position (ties broken, not averaged)"


def relevance_from_ranks(ranks: ArrayLike, n: int | None = None) -> np.ndarray:
    """Relevance (N + 1 - rank)/2 + 0.5 of 1-based ranks (N = 10 gives 5.5 ... 1.0)."""
    r = np.asarray(ranks, float)
    n = r.shape[-1] if n is None else n
    return (n + 1 - r) / 2.0 + 0.5


def ranks_from_scores(scores: ArrayLike, *, higher_is_closer: bool = True) -> np.ndarray:
    """1-based ranks along the last axis (rank 1 = most similar); equal scores: lower index first."""
    s = np.asarray(scores, float)
    order = np.argsort(-s if higher_is_closer else s, axis=-1, kind="stable")
    return np.argsort(order, axis=-1) + 1


def ranks_from_order(order: ArrayLike) -> np.ndarray:
    """1-based ranks from an order (candidate indices listed from most to least similar)."""
    return np.argsort(np.asarray(order), axis=-1) + 1


def _to_ranks(method: ArrayLike, method_is: str) -> np.ndarray:
    """Method output given as 'ranks', 'order', 'scores' (high = close) or 'distances' -> ranks."""
    if method_is == "ranks":
        return np.asarray(method)
    if method_is == "order":
        return ranks_from_order(method)
    if method_is in ("scores", "distances"):
        return ranks_from_scores(method, higher_is_closer=method_is == "scores")
    raise ValueError(f"method_is must be ranks, order, scores or distances, not {method_is!r}")


def ndcg_at(
    method: ArrayLike, reference_ranks: ArrayLike, p: int, *, gain: str = "exp", method_is: str = "ranks"
) -> np.ndarray | float:
    """nDCG@p of a method's order against a reader's ranks (vectorised over leading axes)."""
    ranks = _to_ranks(method, method_is)
    ref = np.asarray(reference_ranks)
    g = _gain(relevance_from_ranks(ref), gain)
    p = min(p, ref.shape[-1])
    order = np.argsort(ranks, axis=-1, kind="stable")[..., :p]
    out = ndcg_from_gains(np.take_along_axis(g, order, axis=-1), -np.sort(-g, axis=-1)[..., :p])
    return float(out) if np.ndim(out) == 0 else out


def tied_cases(distances: ArrayLike) -> np.ndarray:
    """(...,) True for each case (last axis: candidates) in which two candidates have equal distances."""
    d = np.sort(np.asarray(distances, float), axis=-1)
    return (np.diff(d, axis=-1) == 0).any(-1)


def ndcg_tie_averaged(distances: ArrayLike, reference_ranks: ArrayLike, p: int, *, gain: str = "exp") -> np.ndarray:
    """(n_cases,) nDCG@p averaged over every order of tied distances (McSherry & Najork 2008).

    Each position held by a group of equal distances gets the group's mean gain: the expected DCG
    when the tied candidates are ordered at random. Without ties it equals ``ndcg_at``.
    """
    d = np.atleast_2d(np.asarray(distances, float))
    ref = np.atleast_2d(np.asarray(reference_ranks))
    g = _gain(relevance_from_ranks(ref), gain)
    p = min(p, ref.shape[-1])
    disc = discounts(p)
    out = np.empty(len(d))
    for c in range(len(d)):
        order = np.argsort(d[c], kind="stable")
        group = np.concatenate([[0], np.cumsum(np.diff(d[c][order]) != 0)])
        mean_gain = np.bincount(group, weights=g[c][order]) / np.bincount(group)
        out[c] = (mean_gain[group[:p]] @ disc) / (-np.sort(-g[c])[:p] @ disc)
    return out


def expected_random_ndcg(n: int, p: int, *, gain: str = "exp") -> float:
    """Exact mean nDCG@p of a uniformly random order of n candidates (each slot: the mean gain)."""
    g = _gain(relevance_from_ranks(np.arange(1, n + 1)), gain)
    disc = discounts(min(p, n))
    return float(g.mean() * disc.sum() / (g[: len(disc)] @ disc))


def kendall_tau(a: ArrayLike, b: ArrayLike) -> np.ndarray | float:
    """Kendall's tau-b along the last axis (as scipy.stats.kendalltau), vectorised over cases."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    sa = np.sign(a[..., :, None] - a[..., None, :])
    sb = np.sign(b[..., :, None] - b[..., None, :])
    tau = (sa * sb).sum((-2, -1)) / np.sqrt(np.abs(sa).sum((-2, -1)) * np.abs(sb).sum((-2, -1)))
    return float(tau) if np.ndim(tau) == 0 else tau


def spearman_rho(a: ArrayLike, b: ArrayLike) -> np.ndarray | float:
    """Spearman's rho along the last axis (Pearson of scipy average ranks), vectorised over cases."""
    ra = sps.rankdata(a, axis=-1)
    rb = sps.rankdata(b, axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    rho = (ra * rb).sum(-1) / np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return float(rho) if np.ndim(rho) == 0 else rho


def ranking_summary(
    reader_ranks: ArrayLike,
    method_ranks: Mapping[str, ArrayLike],
    *,
    ground_truth: int = 0,
    p: Sequence[int] = (3, 10),
    gain: str = "exp",
    reader_names: Sequence[str] | None = None,
) -> dict:
    """Per-case nDCG@p, Kendall tau, Spearman rho of methods and other readers vs the ground-truth reader."""
    readers = np.asarray(reader_ranks)
    n_cases, n_cand, n_readers = readers.shape
    names = list(reader_names or [f"R{r + 1}" for r in range(n_readers)])
    truth = readers[..., ground_truth]
    compared = {name: np.asarray(r) for name, r in method_ranks.items()}
    kinds = dict.fromkeys(compared, "method")
    for r in range(n_readers):
        if r != ground_truth:
            compared[names[r]], kinds[names[r]] = readers[..., r], "reader"
    per_case = {}
    for name, ranks in compared.items():
        per_case[name] = {f"ndcg@{q}": ndcg_at(ranks, truth, q, gain=gain) for q in p}
        per_case[name]["kendall_tau"] = kendall_tau(ranks, truth)
        per_case[name]["spearman_rho"] = spearman_rho(ranks, truth)
    means = {name: {key: float(np.mean(v)) for key, v in vals.items()} for name, vals in per_case.items()}
    random = {f"ndcg@{q}": expected_random_ndcg(n_cand, q, gain=gain) for q in p}
    random.update(kendall_tau=0.0, spearman_rho=0.0)
    other = [name for name in compared if kinds[name] == "reader"]
    # the inter-rater band needs at least one reader besides the ground truth
    band = (
        {key: (min(means[o][key] for o in other), max(means[o][key] for o in other)) for key in random} if other else {}
    )
    return {
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "ground_truth": names[ground_truth],
        "gain": gain,
        "p": list(p),
        "kind": kinds,
        "per_case": per_case,
        "mean": means,
        "random": random,
        "inter_rater_band": band,
    }
