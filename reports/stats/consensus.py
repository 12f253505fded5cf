"""Choose-k studies: the exactly-k consensus of the readers and its tie-break rule, the model's k nearest,
and the whole choose-k summary (``choose_k_summary``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from reports.stats.agreement import (
    agreement_stats,
    cohen_kappa,
    fleiss_kappa_from_stats,
    krippendorff_alpha,
    mean_pairwise_agreement,
    pairwise_cohen_kappa,
    percent_agreement,
    reader_agreement,
)

TIE_BREAK_RULES = {
    "model": "votes desc, then lower model rank, then lower catalogue index",
    "index": "votes desc, then lower catalogue index",
}


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
