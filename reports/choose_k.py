"""Choose-k studies (paper 000): agreement between readers, the exactly-k consensus, each method against both.

Every answer mode's module offers the same five: `NAME` (the report's section key), `section`,
`tests` (p-values, with a bootstrap), `headline` (a subgroup table's block) and
`reader_statistics` (one reader's row of the "by reader" table); reports.build picks the module
by the study's mode.
"""

from __future__ import annotations

import numpy as np

from reports import mrmc
from reports import stats as S
from reports.analysis import (
    Analysis,
    MethodView,
    ci,
    est,
    method_pairs,
    paired_tests,
    reader_mean_ci,
    readers_random_pairs,
    scatter,
)
from reports.options import ReportOptions

NAME = "choose_k"
BY_READER_NOTE = ""
CATALOGUE_ORDER = "catalogue order"


def _tie_breaker(an: Analysis, o: ReportOptions) -> tuple[str, np.ndarray | None, str]:
    """(name, model ranks or None, rule text) of the consensus tie-break actually applied."""
    if o.tie_break == "model":
        for m in an.methods.values():
            if m.mask.all() and an.n_cases:
                return m.name, m.ranks, S.tie_break_rule("model") + f" ({m.name})"
        return CATALOGUE_ORDER, None, S.tie_break_rule("index") + " (no method ranks every analysed case)"
    return CATALOGUE_ORDER, None, S.tie_break_rule("index")


def per_case_agreement(selections: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(C, R) percentage of each case's candidates on which each reader agrees with the reference."""
    return 100.0 * (selections == reference[..., None]).mean(axis=1)


def _inter_reader_choose(sel: np.ndarray, o: ReportOptions) -> dict:
    """Fleiss κ, mean pairwise agreement, pairwise Cohen κ and Krippendorff α between readers."""
    n_cases, _, n_readers = sel.shape
    if n_readers < 2:
        return {
            "fleiss_kappa": est(None),
            "mean_pairwise_agreement": est(None),
            "krippendorff_alpha": est(None),
            "pairwise_cohen_kappa": None,
            "mean_pairwise_cohen_kappa": None,
        }
    stats = S.agreement_stats(sel, n_cat=2)
    items = sel.reshape(-1, n_readers)
    pairwise = S.pairwise_cohen_kappa(items, labels=[False, True])
    off = ~np.eye(n_readers, dtype=bool)
    per_case_pair = (stats.agree * off).sum((1, 2)) / (off.sum() * stats.n_items)
    return {
        "fleiss_kappa": est(
            S.fleiss_kappa_from_stats(stats), ci(S.fleiss_statistic(stats), n_cases, o, n_readers=n_readers)
        ),
        "mean_pairwise_agreement": est(
            100.0 * S.mean_pairwise_agreement(stats), ci(S.mean_statistic(100.0 * per_case_pair), n_cases, o)
        ),
        "krippendorff_alpha": est(S.krippendorff_alpha(items.astype(float))),
        "pairwise_cohen_kappa": pairwise.tolist(),
        "mean_pairwise_cohen_kappa": float(pairwise[off].mean()),
    }


def _agreement_block(sel: np.ndarray, reference: np.ndarray, readers: list[str], o: ReportOptions) -> dict:
    """Per-reader and mean % agreement with a reference selection (Table 2), with CIs."""
    per_case = per_case_agreement(sel, reference)
    pooled = S.reader_agreement(sel, reference)
    n = len(per_case)
    return {
        "reader_agreement": {
            name: est(pooled[r], ci(S.mean_statistic(per_case[:, r]), n, o)) for r, name in enumerate(readers)
        },
        "mean_reader_agreement": est(float(pooled.mean()), reader_mean_ci(per_case, o)),
    }


def _choose_method(sel: np.ndarray, consensus: np.ndarray, m: MethodView, an: Analysis, o: ReportOptions) -> dict:
    """Cohen κ and % agreement of one method's k nearest with the consensus and with each reader."""
    n = int(m.mask.sum())
    if not n:
        return {"available": False, "n_cases": 0}
    s, cons = sel[m.mask], consensus[m.mask]
    chosen = S.model_selection(m.ranks[m.mask], an.k)
    conf = S.paired_confusion(cons, chosen)
    agree_cases = 100.0 * (cons == chosen).mean(axis=1)
    return {
        "available": True,
        "n_cases": n,
        "ties": S.TIES_RULE,
        "n_cases_with_tied_distances": int(S.tied_cases(m.distances[m.mask]).sum()),
        "cohen_kappa_vs_consensus": est(
            S.cohen_kappa(cons, chosen, labels=[False, True]), ci(S.kappa_statistic(conf), n, o)
        ),
        "agreement_with_consensus": est(S.percent_agreement(cons, chosen), ci(S.mean_statistic(agree_cases), n, o)),
        **_agreement_block(s, chosen, an.readers, o),
    }


def section(an: Analysis, o: ReportOptions) -> dict:
    """Paper 000: agreement between readers, the exactly-k consensus, and each method against both."""
    sel = an.values.astype(bool)
    n_cases, n_cand, _ = sel.shape
    _, tb_ranks, rule = _tie_breaker(an, o)
    consensus = S.consensus_selection(
        sel, an.k, model_ranks=tb_ranks, tie_break="model" if tb_ranks is not None else "index"
    )
    k = an.k
    return {
        "k": k,
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "n_items": n_cases * n_cand,
        "readers": an.readers,
        "chance_agreement": 100.0 * (k * k + (n_cand - k) ** 2) / n_cand**2 if n_cand else None,
        **_inter_reader_choose(sel, o),
        "consensus": {
            "tie_break": rule,
            "n_cases_tie_broken": int(S.consensus_tied(sel, k).sum()) if n_cases else 0,
            **_agreement_block(sel, consensus, an.readers, o),
        },
        "methods": {key: _choose_method(sel, consensus, m, an, o) for key, m in an.methods.items()},
    }


def _choose_case_agreement(an: Analysis) -> dict[str, np.ndarray]:
    """Per method, per-case mean reader % agreement with its k nearest (NaN where unavailable)."""
    sel = an.values.astype(bool)
    out = {}
    for key, m in an.methods.items():
        if m.mask.any():
            chosen = S.model_selection(m.ranks[m.mask], an.k)
            out[key] = scatter(per_case_agreement(sel[m.mask], chosen).mean(axis=1), m.mask)
    return out


def tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Reader agreement with each method vs the chance level of a random k; method vs method."""
    per_case = _choose_case_agreement(an)
    chance = section["chance_agreement"]
    sel = an.values.astype(bool)
    vs_random = {}
    for key, v in per_case.items():
        x = v[~np.isnan(v)]
        if len(x) >= 2:
            vs_random[key] = {
                "statistic": "mean reader % agreement",
                "chance": chance,
                **paired_tests(x, np.full(len(x), chance), o, alternative="greater"),
            }
    per_reader = {
        key: scatter(per_case_agreement(sel[m.mask], S.model_selection(m.ranks[m.mask], an.k)), m.mask)
        for key, m in an.methods.items()
        if m.mask.any()
    }
    return {
        "vs_random": vs_random,
        "method_vs_method": method_pairs(per_case, o, "mean reader % agreement"),
        "readers_random": {
            "method": mrmc.OR_METHOD_FLOORED,
            "fom": "per reader: % agreement with the method's k nearest, mean over cases",
            "method_vs_method": readers_random_pairs(per_reader, o, "reader % agreement"),
        },
    }


def headline(section: dict) -> dict[str, dict[str, float | None]]:
    """The headline numbers of a section as {row: {statistic: value}} (a block of a subgroup table)."""
    rows = {
        "readers": {
            "fleiss_kappa": section["fleiss_kappa"]["estimate"],
            "mean_pairwise_agreement": section["mean_pairwise_agreement"]["estimate"],
        },
        "consensus": {"mean_reader_agreement": section["consensus"]["mean_reader_agreement"]["estimate"]},
    }
    for key, m in section["methods"].items():
        if m["available"]:
            rows[key] = {
                "kappa_vs_consensus": m["cohen_kappa_vs_consensus"]["estimate"],
                "mean_reader_agreement": m["mean_reader_agreement"]["estimate"],
            }
    return rows


def reader_statistics(an: Analysis, section: dict, o: ReportOptions, reader: int) -> dict:
    """One reader's % agreement with the consensus and with each method's k nearest."""
    name = an.readers[reader]
    stats = {"consensus": {"agreement": section["consensus"]["reader_agreement"][name]["estimate"]}}
    stats |= {
        k: {"agreement": m["reader_agreement"][name]["estimate"]}
        for k, m in section["methods"].items()
        if m["available"]
    }
    return stats
