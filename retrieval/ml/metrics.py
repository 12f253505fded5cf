"""Retrieval metrics on ranked neighbours: P@k, AP@k (named definitions), nDCG@k, random baselines, hubness.

numpy/scipy only, so the web process can import it without torch. Conventions:

* Leave-one-out retrieval: every item is a query against all the others (n − 1 candidates);
  the query itself is excluded by index (duplicates of it are not). Neighbours come from
  embeddings (cosine or L2) or from a precomputed (n, n) distance matrix (``metric="precomputed"``,
  e.g. 1 − SSIM); nearest first, equal distances by lower index.
* `labels` is a class vector (n,) or a multi-label 0/1 matrix (n, L). For a matrix, an item is
  relevant to a query when they share a positive label (``relevance="any"``) or have identical
  label rows (``"exact"``); items with no positive label are relevant to each other.
* R = number of relevant candidates of a query. Queries with R = 0 score 0 on every metric
  (as sklearn's ndcg_score does), and their random expectation is 0 too.
* Graded relevance from numeric labels (e.g. patient weight): rel = max(0, 1 − |v_q − v_j| / scale),
  with `scale` = the value range of the collection by default, so rel ∈ [0, 1] and 1 means equal
  values. Gain "exp" = 2^rel − 1 (default), "linear" = rel; discount log2(rank + 1).
* Distance correlation (paper 004): Pearson r between embedding distances and label distances over
  the upper triangle — |value difference| for numeric labels (`distance_correlation`), class mismatch
  (0/1) for a class vector and the Jaccard distance between positive-finding sets for a multi-label
  matrix (`label_distance_correlation`, LABEL_DISTANCES).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

AP_DEFINITIONS = ("min_k_R", "hits", "R", "k")
#: What each AP@k definition divides Σ P@i·rel_i by, for tables and pages.
AP_DEFINITION_NAMES = {"min_k_R": "min(k, R)", "hits": "hits in the top k", "R": "R (all relevant)", "k": "k"}
GAINS = ("exp", "linear")
HUBNESS_KS = (3, 5, 7, 11, 17)
#: The skewness of the k-occurrence N_k that hubness reports (stated with every result, issue 14).
SKEWNESS_FORMULA = (
    "biased sample skewness g1 = m3 / m2^1.5 of N_k (scipy.stats.skew, bias=True); 0 when N_k is constant"
)
RELEVANCE_MODES = ("any", "exact")
_BLOCK_ELEMENTS = 16_000_000  # rows × n per block of a distance matrix (128 MB of float64)


class Named(NamedTuple):
    """A metric value with the name of the definition it was computed under."""

    value: float
    definition: str


# --- neighbours ---------------------------------------------------------------------------


def _block_rows(n: int) -> int:
    """Rows per block so that a block of an n-column matrix stays around 128 MB."""
    return max(1, _BLOCK_ELEMENTS // max(n, 1))


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance matrix (len(a), len(b)): cosine distance 1 − cos, or Euclidean ("l2")."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        a_n = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b_n = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - a_n @ b_n.T
    if metric == "l2":
        squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(squared, 0.0))
    raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}.")


def knn(embeddings: np.ndarray, k: int, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other items of each item, nearest first, ties by lower index: (idx, dist), each (n, k).

    `metric` "cosine" or "l2" between embedding rows, or "precomputed": `embeddings` is then an (n, n)
    distance matrix whose row q holds query q's distances to every item (e.g. 1 − SSIM).
    """
    if metric == "precomputed":
        x = square_distances(embeddings)
        block = lambda rows: x[rows]  # noqa: E731 (fancy indexing copies the rows)
    else:
        x = np.asarray(embeddings, dtype=np.float64)
        block = lambda rows: pairwise_distances(x[rows], x, metric)  # noqa: E731
    n = len(x)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..n-1 = {n - 1}, got {k}.")
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    step = _block_rows(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        idx[rows], dist[rows] = _k_smallest(block(rows), rows, k)
    return idx, dist


def square_distances(distances: np.ndarray) -> np.ndarray:
    """A precomputed distance matrix as float64 (n, n), refused when not square or with NaN."""
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"a precomputed distance matrix must be (n, n), got {d.shape}.")
    if np.isnan(d).any():
        raise ValueError("the distance matrix contains NaN.")
    return d


def _k_smallest(d: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block row (row i = item rows[i]), the k smallest distances to the others, ascending, ties by lower index.

    Exact at the k-th place too: of the items tied with the k-th distance, the lowest indices are kept.
    Overwrites the block's self entries.
    """
    local = np.arange(len(rows))
    d[local, rows] = np.inf  # self-exclusion by index
    kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]
    below = d < kth
    tied = d == kth
    tied[local, rows] = False  # never fill a tie with the item itself
    room = k - below.sum(axis=1, keepdims=True)
    chosen = below | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
    cols = np.nonzero(chosen)[1].reshape(len(rows), k)  # ascending index within each row
    values = np.take_along_axis(d, cols, axis=1)
    order = np.lexsort((cols, values), axis=1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(values, order, axis=1)


# --- relevance ----------------------------------------------------------------------------


def _check_mode(mode: str) -> None:
    """Reject unknown multi-label relevance modes."""
    if mode not in RELEVANCE_MODES:
        raise ValueError(f"relevance must be one of {RELEVANCE_MODES}, got {mode!r}.")


def relevance(labels: np.ndarray, neighbours: np.ndarray, mode: str = "any") -> np.ndarray:
    """Boolean (n, k): is neighbours[q, j] relevant to query q (same class / shared label / same label row)."""
    _check_mode(mode)
    labels = np.asarray(labels)
    queries = np.arange(len(neighbours))[:, None]
    if labels.ndim == 1:
        return labels[queries] == labels[neighbours]
    y = labels.astype(bool)
    if mode == "exact":
        return (y[queries] == y[neighbours]).all(axis=-1)
    shared = (y[queries] & y[neighbours]).any(axis=-1)
    empty = ~y.any(axis=1)
    return shared | (empty[queries] & empty[neighbours])


def n_relevant(labels: np.ndarray, mode: str = "any") -> np.ndarray:
    """R per query: how many of the other items are relevant to it."""
    _check_mode(mode)
    labels = np.asarray(labels)
    if labels.ndim == 1 or mode == "exact":
        _, inverse, counts = np.unique(
            labels, axis=0 if labels.ndim == 2 else None, return_inverse=True, return_counts=True
        )
        return counts[inverse.reshape(-1)] - 1
    y = labels.astype(np.float64)
    empty = ~labels.astype(bool).any(axis=1)
    out = np.empty(len(y), dtype=np.int64)
    step = _block_rows(len(y))
    for start in range(0, len(y), step):
        stop = min(start + step, len(y))
        related = (y[start:stop] @ y.T > 0) | (empty[start:stop, None] & empty[None, :])
        out[start:stop] = related.sum(axis=1) - 1  # an item is always relevant to itself
    return out


def class_groups(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Query masks per class for macro averages; multi-label: one group per label plus "none" for empty rows."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return {str(c): labels == c for c in np.unique(labels)}
    y = labels.astype(bool)
    groups = {str(j): y[:, j] for j in range(y.shape[1]) if y[:, j].any()}
    if (~y.any(axis=1)).any():
        groups["none"] = ~y.any(axis=1)
    return groups


def macro_average(per_query: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of the per-class mean of a per-query metric."""
    per_query = np.asarray(per_query, dtype=np.float64)
    return float(np.mean([per_query[mask].mean() for mask in class_groups(labels).values()]))


# --- metrics per query (rel: (n, ≥k) relevance of the ranked neighbours) -------------------


def precision_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """Per-query precision@k: share of relevant items among the first k."""
    _check_k(rel, k)
    return np.asarray(rel, dtype=np.float64)[:, :k].mean(axis=1)


def average_precision_at_k(rel: np.ndarray, n_rel: np.ndarray, k: int, definition: str = "min_k_R") -> np.ndarray:
    """Per-query AP@k = Σ_{i≤k} P@i·rel_i / denominator; denominator min(k, R), hits in top k, R, or k."""
    _check_k(rel, k)
    r = np.asarray(rel, dtype=np.float64)[:, :k]
    hits = np.cumsum(r, axis=1)
    numerator = (hits / np.arange(1, k + 1) * r).sum(axis=1)
    denominator = _ap_denominator(definition, k, np.asarray(n_rel, dtype=np.float64), hits[:, -1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


def _ap_denominator(definition: str, k: int, n_rel: Any, hits: Any) -> Any:
    """The AP@k denominator under a named definition."""
    if definition == "min_k_R":
        return np.minimum(k, n_rel)
    if definition == "hits":
        return hits
    if definition == "R":
        return n_rel
    if definition == "k":
        return np.full_like(np.asarray(n_rel, dtype=np.float64), float(k))
    raise ValueError(f"AP definition must be one of {AP_DEFINITIONS}, got {definition!r}.")


def mean_average_precision_at_k(rel: np.ndarray, n_rel: np.ndarray, k: int, definition: str = "min_k_R") -> Named:
    """mAP@k over queries, named by its AP definition."""
    return Named(float(average_precision_at_k(rel, n_rel, k, definition).mean()), definition)


def gain(relevance_values: np.ndarray, kind: str = "exp") -> np.ndarray:
    """Gain of a relevance value: 2^rel − 1 ("exp") or rel ("linear")."""
    values = np.asarray(relevance_values, dtype=np.float64)
    if kind == "exp":
        return np.exp2(values) - 1.0
    if kind == "linear":
        return values
    raise ValueError(f"gain must be one of {GAINS}, got {kind!r}.")


def discounts(k: int) -> np.ndarray:
    """Rank discounts 1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_from_gains(gains: np.ndarray, ideal_gains: np.ndarray) -> np.ndarray:
    """DCG of the retrieved gains over the DCG of the ideal gains along the last axis (0 where the ideal DCG
    is 0): the one nDCG of the platform, used by the retrieval metrics and by the reports' reader rankings."""
    gains = np.asarray(gains, dtype=np.float64)
    dcg = gains @ discounts(gains.shape[-1])
    idcg = np.asarray(ideal_gains, dtype=np.float64) @ discounts(gains.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(idcg > 0, dcg / idcg, 0.0)


def ndcg_binary(rel: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Per-query nDCG@k for binary relevance; the ideal list holds min(k, R) relevant items (gain 1 either way)."""
    _check_k(rel, k)
    ideal = (np.arange(k)[None, :] < np.asarray(n_rel)[:, None]).astype(np.float64)
    return ndcg_from_gains(np.asarray(rel, dtype=np.float64)[:, :k], ideal)


def graded_relevance(query_values: np.ndarray, item_values: np.ndarray, scale: float) -> np.ndarray:
    """Relevance from numeric labels: max(0, 1 − |v_q − v_j| / scale), broadcasting."""
    return np.clip(1.0 - np.abs(np.asarray(query_values, float) - np.asarray(item_values, float)) / scale, 0.0, 1.0)


def _value_scale(values: np.ndarray, scale: float | None) -> float:
    """The graded-relevance scale: given, else the value range (1 if all values are equal)."""
    if scale is not None:
        return float(scale)
    spread = float(np.ptp(values))
    return spread if spread > 0 else 1.0


def ndcg_graded(
    values: np.ndarray, neighbours: np.ndarray, k: int, *, gain_kind: str = "exp", scale: float | None = None
) -> np.ndarray:
    """Per-query nDCG@k with graded relevance from numeric labels; the ideal is the best k of the whole collection."""
    _check_k(neighbours, k)
    v = np.asarray(values, dtype=np.float64)
    s = _value_scale(v, scale)
    retrieved = gain(graded_relevance(v[:, None], v[neighbours[:, :k]], s), gain_kind)
    return ndcg_from_gains(retrieved, _ideal_graded_gains(v, k, gain_kind, s))


def _ideal_graded_gains(values: np.ndarray, k: int, gain_kind: str, scale: float) -> np.ndarray:
    """Per query, the k largest gains over all other items, descending."""
    n = len(values)
    out = np.empty((n, k))
    step = _block_rows(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        g = gain(graded_relevance(values[rows, None], values[None, :], scale), gain_kind)
        g[np.arange(len(rows)), rows] = -np.inf
        out[rows] = -np.sort(-np.partition(g, n - k, axis=1)[:, n - k :], axis=1)
    return out


def _check_k(rel: np.ndarray, k: int) -> None:
    """k must be positive and within the ranked list."""
    if not 1 <= k <= np.shape(rel)[1]:
        raise ValueError(f"k={k} outside 1..{np.shape(rel)[1]} ranked neighbours.")


# --- expected values under random retrieval (k candidates drawn without replacement) ------


def random_precision(n_rel: np.ndarray, n_candidates: int) -> np.ndarray:
    """Per-query expected P@k of random retrieval: R / (n − 1), whatever k."""
    return np.asarray(n_rel, dtype=np.float64) / n_candidates


def random_average_precision(n_rel: np.ndarray, n_candidates: int, k: int, definition: str = "min_k_R") -> np.ndarray:
    """Per-query expected AP@k of random retrieval, exact: hits H ~ hypergeometric, placed uniformly in the top k.

    Given H = h hits, E[Σ_i P@i·rel_i] = Σ_i (1/i)·(h/k)·(1 + (i − 1)(h − 1)/(k − 1)); average
    that over the law of H, divided by the definition's denominator.
    """
    n_rel = np.asarray(n_rel, dtype=np.int64)
    out = np.empty(len(n_rel))
    for r in np.unique(n_rel):
        out[n_rel == r] = _random_ap_single(int(r), n_candidates, k, definition)
    return out


def _random_ap_single(r: int, n_candidates: int, k: int, definition: str) -> float:
    """Expected AP@k of random retrieval for one value of R."""
    if r == 0:
        return 0.0
    h = np.arange(0, min(k, r) + 1)
    pmf = stats.hypergeom(n_candidates, r, k).pmf(h)
    i = np.arange(1, k + 1)[:, None]
    pair = (h - 1) / (k - 1) if k > 1 else np.zeros_like(h, dtype=float)
    numerator = ((1.0 / i) * (h / k) * (1 + (i - 1) * pair)).sum(axis=0)
    denominator = np.asarray(_ap_denominator(definition, k, np.full(len(h), float(r)), h.astype(float)), float)
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = np.where(denominator > 0, numerator / denominator, 0.0)
    return float((pmf * conditional).sum())


def random_ndcg_binary(n_rel: np.ndarray, n_candidates: int, k: int) -> np.ndarray:
    """Per-query expected binary nDCG@k of random retrieval: (R/(n − 1))·Σ discounts / IDCG (IDCG is fixed)."""
    n_rel = np.asarray(n_rel, dtype=np.float64)
    disc = discounts(k)
    idcg = np.array([disc[: int(min(k, r))].sum() for r in n_rel])
    expected_dcg = n_rel / n_candidates * disc.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(idcg > 0, expected_dcg / idcg, 0.0)


def random_ndcg_graded(values: np.ndarray, k: int, *, gain_kind: str = "exp", scale: float | None = None) -> np.ndarray:
    """Per-query expected graded nDCG@k of random retrieval: mean gain of the others · Σ discounts / IDCG."""
    v = np.asarray(values, dtype=np.float64)
    s = _value_scale(v, scale)
    n = len(v)
    mean_gain = np.empty(n)
    step = _block_rows(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        g = gain(graded_relevance(v[rows, None], v[None, :], s), gain_kind)
        mean_gain[rows] = (g.sum(axis=1) - gain(1.0, gain_kind)) / (n - 1)  # drop the self term (rel = 1)
    idcg = _ideal_graded_gains(v, k, gain_kind, s) @ discounts(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(idcg > 0, mean_gain * discounts(k).sum() / idcg, 0.0)


def random_neighbours(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """One random retrieval: for each query, k distinct other items in random order, (n, k)."""
    keys = rng.random((n, n))
    np.fill_diagonal(keys, np.inf)
    part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def random_baseline_mc(
    score: Callable[[np.ndarray], np.ndarray], n: int, k: int, *, n_draws: int = 200, seed: int = 0
) -> np.ndarray:
    """Seeded Monte Carlo expectation, per query, of `score(neighbours)` under random retrieval."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for _ in range(n_draws):
        total += score(random_neighbours(n, k, rng))
    return total / n_draws


def ttest_against_random(
    observed: np.ndarray, expected: np.ndarray, alternative: str = "two-sided"
) -> tuple[float, float]:
    """Paired t-test of per-query metric values against their per-query random expectation: (t, p)."""
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if len(observed) < 2 or np.allclose(observed - expected, (observed - expected)[0]):
        return math.nan, math.nan  # no variance: the t statistic is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(observed, expected, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


# --- embedding-space structure ------------------------------------------------------------


def k_occurrence(neighbours: np.ndarray, k: int, n: int | None = None) -> np.ndarray:
    """N_k: how often each of the n items appears in the others' top-k lists (zeros included)."""
    n = len(neighbours) if n is None else n
    return np.bincount(np.asarray(neighbours)[:, :k].ravel(), minlength=n)


def hubness(neighbours: np.ndarray, ks: Sequence[int] = HUBNESS_KS) -> dict[str, float]:
    """Skewness of N_k and antihub share per k, and paper 004's hubness index mean_k exp(−|skew|)."""
    out: dict[str, float] = {}
    indices = []
    for k in ks:
        if k > np.shape(neighbours)[1]:
            continue
        counts = k_occurrence(neighbours, k)
        skew = float(stats.skew(counts)) if counts.std() > 0 else 0.0
        out[f"hubness_skew@{k}"] = skew
        out[f"antihub_share@{k}"] = float(np.mean(counts == 0))
        indices.append(math.exp(-abs(skew)))
    out["hubness_index"] = float(np.mean(indices)) if indices else math.nan
    out["k_occurrence_skewness"] = SKEWNESS_FORMULA
    return out


def distance_correlation(
    embeddings: np.ndarray,
    targets: np.ndarray,
    *,
    metric: str = "cosine",
    target_metric: str = "euclidean",
    precomputed: bool = False,
    max_items: int | None = 5000,
    seed: int = 0,
) -> tuple[float, float]:
    """Pearson (r, p) between embedding distances and target distances over the upper triangle (paper 004).

    `metric` "cosine", "l2", or "precomputed" when `embeddings` is already an (n, n) distance matrix.
    `targets`: numeric values (n,), vectors (n, m), or with `precomputed` an (n, n) distance matrix.
    Above `max_items` items, a seeded random subset of that size is used (n² pairs grow fast).
    """
    x = square_distances(embeddings) if metric == "precomputed" else np.asarray(embeddings, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    keep = np.arange(len(x))
    if max_items is not None and len(x) > max_items:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_items, replace=False))
    if metric == "precomputed":
        emb = _upper_triangle(x, keep)
    else:
        emb = pdist(x[keep], "cosine" if metric == "cosine" else "euclidean")
    if precomputed:
        target = _upper_triangle(t, keep)
    else:
        target = pdist(t[keep].reshape(len(keep), -1), target_metric)
    result = stats.pearsonr(emb, target)
    return float(result.statistic), float(result.pvalue)


#: The label distance of `label_distance_correlation`, by kind of labels.
LABEL_DISTANCES = {
    "class": "0 for the same class, 1 for different classes",
    "jaccard": "Jaccard distance 1 − |A ∩ B| / |A ∪ B| between the sets of positive findings (0 for two empty sets)",
}


def label_distances(labels: np.ndarray) -> tuple[np.ndarray, str]:
    """Condensed (pdist order) label distances and their name: "class" for a class vector (n,),
    "jaccard" for a 0/1 multi-label matrix (n, L). See LABEL_DISTANCES."""
    y = np.asarray(labels)
    if y.ndim == 1:
        return pdist(y.reshape(-1, 1).astype(np.float64), "hamming"), "class"
    return pdist(y.astype(bool), "jaccard"), "jaccard"


def label_distance_correlation(
    embeddings: np.ndarray, labels: np.ndarray, *, metric: str = "cosine", max_items: int | None = 5000, seed: int = 0
) -> tuple[float, float, str]:
    """Pearson (r, p, label distance name) between embedding distances and binary / multi-label label
    distances over the upper triangle (paper 004's distance correlation for labels that are not numbers).

    NaN when either side is constant (e.g. every image of one class): no correlation is defined.
    """
    x = square_distances(embeddings) if metric == "precomputed" else np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    keep = np.arange(len(x))
    if max_items is not None and len(x) > max_items:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_items, replace=False))
    target, name = label_distances(y[keep])
    if metric == "precomputed":
        emb = _upper_triangle(x, keep)
    else:
        emb = pdist(x[keep], "cosine" if metric == "cosine" else "euclidean")
    if len(emb) < 2 or np.ptp(target) == 0 or np.ptp(emb) == 0:
        return math.nan, math.nan, name
    result = stats.pearsonr(emb, target)
    return float(result.statistic), float(result.pvalue), name


def _upper_triangle(matrix: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The pairs i < j among the kept items of an (n, n) matrix, in pdist's order."""
    return matrix[np.ix_(keep, keep)][np.triu_indices(len(keep), k=1)]


# --- everything at once -------------------------------------------------------------------


def evaluate_retrieval(
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    numeric: np.ndarray | None = None,
    ks: Sequence[int] = (1, 3, 5, 10),
    *,
    metric: str = "cosine",
    ap_definition: str = "min_k_R",
    relevance_mode: str = "any",
    gain_kind: str = "exp",
    hubness_ks: Sequence[int] = HUBNESS_KS,
    alternative: str = "two-sided",
) -> dict[str, float | int | str]:
    """Leave-one-out retrieval metrics, each beside its random-retrieval expectation and a paired t-test against it.

    With `metric="precomputed"`, `embeddings` is an (n, n) distance matrix (see `knn`): the same
    neighbours-based metrics, and the distance correlation uses the matrix.
    """
    if ap_definition not in AP_DEFINITIONS:
        raise ValueError(f"AP definition must be one of {AP_DEFINITIONS}, got {ap_definition!r}.")
    x = np.asarray(embeddings)
    n = len(x)
    ks = [k for k in ks if k <= n - 1]
    hub_ks = [k for k in hubness_ks if k <= n - 1]
    k_max = max([*ks, *hub_ks], default=0)
    if k_max == 0:
        raise ValueError(f"too few items ({n}) for the requested k.")
    neighbours, _ = knn(x, k_max, metric)
    out: dict[str, float | int | str] = {
        "n_queries": n,
        "metric": metric,
        "ap_definition": ap_definition,
        "relevance": relevance_mode,
        "gain": gain_kind,
    }
    if labels is not None:
        out.update(_label_metrics(neighbours, np.asarray(labels), ks, ap_definition, relevance_mode, alternative))
        r, p, name = label_distance_correlation(x, np.asarray(labels), metric=metric)
        out.update({"label_distance_correlation_r": r, "label_distance_correlation_p": p, "label_distance": name})
    if numeric is not None:
        out.update(_numeric_metrics(x, neighbours, np.asarray(numeric, float), ks, metric, gain_kind, alternative))
    out.update(hubness(neighbours, hub_ks))
    return out


def evaluate_retrieval_from_distances(
    distances: np.ndarray,
    labels: np.ndarray | None,
    numeric: np.ndarray | None = None,
    ks: Sequence[int] = (1, 3, 5, 10),
    **options: Any,
) -> dict[str, float | int | str]:
    """`evaluate_retrieval` from a precomputed (n, n) distance matrix (row q: query q's distances), e.g. 1 − SSIM."""
    return evaluate_retrieval(distances, labels, numeric, ks, metric="precomputed", **options)


def _with_baseline(name: str, observed: np.ndarray, expected: np.ndarray, alternative: str) -> dict[str, float]:
    """`name`, `name_random`, `name_t`, `name_p` for one per-query metric."""
    t, p = ttest_against_random(observed, expected, alternative)
    return {name: float(observed.mean()), f"{name}_random": float(expected.mean()), f"{name}_t": t, f"{name}_p": p}


def _label_metrics(
    neighbours: np.ndarray, labels: np.ndarray, ks: Sequence[int], ap_definition: str, mode: str, alternative: str
) -> dict[str, float]:
    """P@k (micro, macro), mAP@k (every definition, the chosen one unsuffixed) and binary nDCG@k."""
    n = len(labels)
    rel = relevance(labels, neighbours, mode)
    n_rel = n_relevant(labels, mode)
    out: dict[str, float] = {}
    for k in ks:
        p, p_rand = precision_at_k(rel, k), random_precision(n_rel, n - 1)
        out.update(_with_baseline(f"precision@{k}", p, p_rand, alternative))
        out[f"precision@{k}_macro"] = macro_average(p, labels)
        out[f"precision@{k}_macro_random"] = macro_average(p_rand, labels)
        for definition in AP_DEFINITIONS:
            ap = average_precision_at_k(rel, n_rel, k, definition)
            ap_rand = random_average_precision(n_rel, n - 1, k, definition)
            out.update(_with_baseline(f"map@{k}[{definition}]", ap, ap_rand, alternative))
            if definition == ap_definition:
                out.update(_with_baseline(f"map@{k}", ap, ap_rand, alternative))
        out.update(
            _with_baseline(f"ndcg@{k}", ndcg_binary(rel, n_rel, k), random_ndcg_binary(n_rel, n - 1, k), alternative)
        )
    return out


def _numeric_metrics(
    x: np.ndarray,
    neighbours: np.ndarray,
    values: np.ndarray,
    ks: Sequence[int],
    metric: str,
    gain_kind: str,
    alternative: str,
) -> dict[str, float]:
    """Graded nDCG@k from numeric labels and the distance correlation with |value differences|."""
    out: dict[str, float] = {}
    for k in ks:
        observed = ndcg_graded(values, neighbours, k, gain_kind=gain_kind)
        expected = random_ndcg_graded(values, k, gain_kind=gain_kind)
        out.update(_with_baseline(f"ndcg_graded@{k}", observed, expected, alternative))
    r, p = distance_correlation(x, values, metric=metric)
    out["distance_correlation_r"] = r
    out["distance_correlation_p"] = p
    return out
