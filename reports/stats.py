"""Agreement and ranking statistics for reader studies: arrays in, numbers out (no Django).

Conventions used throughout
---------------------------
* Axes: ``(n_cases, n_candidates, n_readers)`` for choose-k selections and reader rankings,
  ``(n_cases, n_candidates)`` for one method; functions that take a flat list of items use
  ``(n_items, n_readers)``.
* Ranks are 1-based and 1 means *most similar* (the model's nearest image has rank 1).
* Percentages are on the 0-100 scale; kappas, alphas and nDCG on their usual scale.
* Confidence intervals resample **cases** (queries), never the items inside a case: the items of
  one query are correlated and the item bootstrap is too narrow (papers README).  The statistic
  functions therefore work on per-case sufficient statistics so that one bootstrap resample is a
  weighted sum over cases (``case_weights`` = how often each case was drawn), not a recomputation.

Consensus tie-break rule (choose-k studies)
-------------------------------------------
The consensus selects exactly ``k`` candidates, ordered by number of reader votes (descending).
Candidates with equal votes at the cut-off are ordered by ``tie_break``:

* ``'index'`` (the report's default, ``ReportOptions.tie_break``): the lower catalogue index wins
  (model-independent).
* ``'model'`` (the default of ``consensus_selection`` and ``choose_k_summary`` called directly): the
  candidate the model ranks closer (lower model rank) wins; remaining ties (equal model ranks) go to
  the lower catalogue index.  Falls back to ``'index'`` when no model ranks are given.  Note that this
  favours the tie-breaking model when consensus is later compared with that same model, so the
  number of tie-broken cases is always reported.

Ties in a method's distances
----------------------------
``ranks_from_scores`` breaks equal distances by the lower catalogue position (``TIES_RULE``); the
k nearest of choose-k, nDCG@p, Kendall τ and Spearman ρ all use these tie-broken ranks.
``ndcg_tie_averaged`` is the alternative: the expected nDCG over every order of the tied candidates
(McSherry & Najork 2008); the report shows it beside nDCG when a method has ties.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa

from retrieval.ml.metrics import discounts, ndcg_from_gains  # the one nDCG (numpy only)
from retrieval.ml.metrics import gain as _gain

TIES_RULE = "equal distances are ordered by the lower catalogue position (ties broken, not averaged)"

TIE_BREAK_RULES = {
    "model": "votes desc, then lower model rank, then lower catalogue index",
    "index": "votes desc, then lower catalogue index",
}

# --------------------------------------------------------------------------------------------
# Choose-k studies: agreement between readers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Choose-k studies: consensus, model selection, agreement with the model
# --------------------------------------------------------------------------------------------


def tie_break_rule(tie_break: str = "model", *, has_model_ranks: bool = True) -> str:
    """Human-readable name of the consensus tie-break rule actually applied."""
    if tie_break not in TIE_BREAK_RULES:
        raise ValueError(f"tie_break must be one of {sorted(TIE_BREAK_RULES)}, not {tie_break!r}")
    return TIE_BREAK_RULES["index" if not has_model_ranks else tie_break]


def _top_k_mask(sort_key: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k smallest keys along the last axis (stable: lower index first)."""
    order = np.argsort(sort_key, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(sort_key.shape, bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def consensus_selection(
    selections: ArrayLike, k: int, *, model_ranks: ArrayLike | None = None, tie_break: str = "model"
) -> np.ndarray:
    """Exactly-k consensus mask (..., n_cand) from (..., n_cand, n_readers) 0/1 votes.

    Rule: most votes first; ties at the cut-off go to the lower model rank when tie_break='model'
    and model_ranks are given, then to the lower catalogue index ('index' uses the index only).
    """
    votes = np.asarray(selections).sum(-1)
    tie_break_rule(tie_break)  # validates the name
    n_cand = votes.shape[-1]
    if tie_break == "model" and model_ranks is not None:
        secondary = np.argsort(np.argsort(np.asarray(model_ranks), axis=-1, kind="stable"), axis=-1)
    else:
        secondary = np.broadcast_to(np.arange(n_cand), votes.shape)
    return _top_k_mask(-votes.astype(np.int64) * n_cand + secondary, k)


def consensus_tied(selections: ArrayLike, k: int) -> np.ndarray:
    """True for each case whose k-th and (k+1)-th most voted candidates have equal votes."""
    votes = -np.sort(-np.asarray(selections).sum(-1), axis=-1)
    if k >= votes.shape[-1]:
        return np.zeros(votes.shape[:-1], bool)
    return votes[..., k - 1] == votes[..., k]


def model_selection(model_ranks: ArrayLike, k: int) -> np.ndarray:
    """Mask (..., n_cand) of the model's k nearest candidates (rank 1 = nearest; ties: lower index)."""
    return _top_k_mask(np.asarray(model_ranks), k)


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


def _as_methods(model_ranks: ArrayLike | Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    """Normalise one array or a {name: array} mapping of model ranks to a dict."""
    if isinstance(model_ranks, Mapping):
        return {name: np.asarray(r) for name, r in model_ranks.items()}
    return {"model": np.asarray(model_ranks)}


def choose_k_summary(
    selections: ArrayLike,
    model_ranks: ArrayLike | Mapping[str, ArrayLike],
    k: int,
    *,
    tie_break: str = "model",
    tie_break_method: str | None = None,
) -> dict:
    """Agreement report of a choose-k study: selections (C, M, R), model ranks (C, M) per method."""
    sel = np.asarray(selections).astype(bool)
    n_cases, n_cand, n_readers = sel.shape
    methods = _as_methods(model_ranks)
    tb_name = tie_break_method or next(iter(methods))
    stats = agreement_stats(sel)
    items = sel.reshape(-1, n_readers)
    pairwise = pairwise_cohen_kappa(items, labels=[False, True])
    consensus = consensus_selection(sel, k, model_ranks=methods[tb_name], tie_break=tie_break)
    report = {
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "n_readers": n_readers,
        "k": k,
        "fleiss_kappa": fleiss_kappa_from_stats(stats),
        "mean_pairwise_agreement": 100.0 * mean_pairwise_agreement(stats),
        "pairwise_cohen_kappa": pairwise,
        "mean_pairwise_cohen_kappa": float(pairwise[~np.eye(n_readers, dtype=bool)].mean()),
        "krippendorff_alpha": krippendorff_alpha(items.astype(float)),
        "consensus": consensus,
        "consensus_tie_break": tie_break_rule(tie_break) + (f" ({tb_name})" if tie_break == "model" else ""),
        "n_cases_tie_broken": int(consensus_tied(sel, k).sum()),
        "reader_agreement_with_consensus": reader_agreement(sel, consensus),
        "methods": {},
    }
    report["mean_reader_agreement_with_consensus"] = float(report["reader_agreement_with_consensus"].mean())
    for name, ranks in methods.items():
        chosen = model_selection(ranks, k)
        per_reader = reader_agreement(sel, chosen)
        report["methods"][name] = {
            "selection": chosen,
            "cohen_kappa_vs_consensus": cohen_kappa(consensus, chosen, labels=[False, True]),
            "agreement_with_consensus": percent_agreement(consensus, chosen),
            "reader_agreement": per_reader,
            "mean_reader_agreement": float(per_reader.mean()),
        }
    return report


# --------------------------------------------------------------------------------------------
# Ranking studies
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rating studies (1-5 per candidate)
# --------------------------------------------------------------------------------------------

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


ICC_READERS_RULE = (
    "readers resampled: each distinct drawn reader counts once (a reader drawn twice is one rater, "
    "as Fleiss κ leaves out same-reader pairs); resamples with one distinct reader are dropped (n_failed)"
)


def icc_statistic(ratings: ArrayLike, *, kind: str = "ICC2") -> Callable[..., float]:
    """Bootstrap statistic ``stat(item_idx[, reader_idx])`` (non-vectorised) of an ICC on an (n_items, R) array.

    With readers resampled, a reader drawn several times counts once: the ICC of the *distinct* drawn
    readers (``ICC_READERS_RULE``). Copies of a column would be raters in perfect agreement (three copies:
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


# --------------------------------------------------------------------------------------------
# Uncertainty: case bootstrap, permutation tests, subgroups
# --------------------------------------------------------------------------------------------


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
) -> dict:
    """Mean nDCG@p of a method vs random catalogue orders (each case's order permuted independently)."""
    ref = np.asarray(reference_ranks)
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


def by_group(per_case_values: ArrayLike, groups: Sequence[Hashable] | ArrayLike) -> dict:
    """{group: {'mean', 'n'}} of per-case values (NaN values skipped), groups in sorted order."""
    x = np.asarray(per_case_values, float)
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    ok = ~np.isnan(x)
    n = np.bincount(inverse[ok], minlength=len(labels))
    sums = np.bincount(inverse[ok], weights=x[ok], minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / n
    keys = labels.tolist()
    return {key: {"mean": float(m), "n": int(c)} for key, m, c in zip(keys, means, n)}
