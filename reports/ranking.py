"""Ranking studies (papers 001 / 003): nDCG@p, Kendall τ and Spearman ρ of each method and reader against the
ground-truth reader's ranking, with permutation tests against random orders.

The same five as every answer mode's module (see reports.choose_k).
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
    nanmean,
    reader_mean_ci,
    readers_random_pairs,
    scatter,
)
from reports.options import NDCG_TIES, ReportOptions

NAME = "ranking"
BY_READER_NOTE = "Methods scored against each reader's ranking as the reference."


def cutoffs(p: tuple[int, ...], n_cand: int) -> list[int]:
    """The nDCG cut-offs as computed: a cut-off beyond the catalogue is computed (and labelled) at its size."""
    return sorted({min(q, n_cand) for q in p}) if n_cand else list(p)


def _metric_names(o: ReportOptions, n_cand: int) -> list[str]:
    return [f"ndcg@{q}" for q in cutoffs(o.p, n_cand)] + ["kendall_tau", "spearman_rho"]


def _ranking_summary(ranks: np.ndarray, methods: dict, gt: int, o: ReportOptions, names: list[str]) -> dict:
    """stats.ranking_summary with the report's options (one reader: no inter-rater band)."""
    return S.ranking_summary(ranks, methods, ground_truth=gt, p=cutoffs(o.p, ranks.shape[1]), reader_names=names)


def method_ndcg(m: MethodView, reference: np.ndarray, q: int, ties: str = "broken") -> np.ndarray:
    """(n rankable cases,) nDCG@q of a method against (C, N) reference ranks, over the cases it ranks.

    ties: ``'broken'`` (its tie-broken ranks: the lower canonical catalogue position first) or ``'averaged'``
    (the expected nDCG over every order of its tied distances, ``stats.ndcg_tie_averaged``).
    """
    ref = reference[m.mask]
    if ties == "averaged":
        return S.ndcg_tie_averaged(m.distances[m.mask], ref, q) if len(ref) else np.zeros(0)
    return np.atleast_1d(S.ndcg_at(m.ranks[m.mask], ref, q))


def _conventions(an: Analysis, o: ReportOptions, n_cand: int) -> dict:
    """The rules applied to the numbers of this section, stated next to them."""
    beyond = [q for q in o.p if n_cand and q > n_cand]
    return {
        "ties": S.TIES_RULE
        + (
            "; nDCG@p of a method is tie-averaged instead (option ndcg_ties=averaged: each group of equal "
            "distances gets its mean gain)"
            if o.ndcg_ties == "averaged"
            else ""
        ),
        "ndcg_ties": o.ndcg_ties,
        "tau_rho": "Kendall τ_b and Spearman ρ of a method use its tie-broken ranks (readers' ranks have no ties)",
        "cutoffs": (
            f"cut-off {', '.join(map(str, beyond))} is beyond the catalogue of {n_cand}: computed and labelled "
            f"ndcg@{n_cand}"
            if beyond
            else ""
        ),
    }


def _tie_averaged(an: Analysis, o: ReportOptions, n_cand: int) -> dict:
    """Per method with tied distances: the cases with ties and the mean tie-averaged nDCG@p (McSherry & Najork)."""
    truth = an.values.astype(int)[..., an.gt]
    out = {}
    for key, m in an.methods.items():
        d, t = m.distances[m.mask], truth[m.mask]
        n_tied = int(S.tied_cases(d).sum()) if len(d) else 0
        if n_tied:
            out[key] = {"n_cases_with_ties": n_tied} | {
                f"ndcg@{q}": float(S.ndcg_tie_averaged(d, t, q).mean()) for q in cutoffs(o.p, n_cand)
            }
    return out


def _tie_broken(an: Analysis, o: ReportOptions, n_cand: int) -> dict:
    """With ndcg_ties=averaged, per method with tied distances: the mean tie-broken nDCG@p (the default's numbers)."""
    if o.ndcg_ties != "averaged":
        return {}
    truth = an.values.astype(int)[..., an.gt]
    out = {}
    for key, m in an.methods.items():
        n_tied = int(S.tied_cases(m.distances[m.mask]).sum()) if m.mask.any() else 0
        if n_tied:
            out[key] = {"n_cases_with_ties": n_tied} | {
                f"ndcg@{q}": float(method_ndcg(m, truth, q).mean()) for q in cutoffs(o.p, n_cand)
            }
    return out


def _ranking_per_case(an: Analysis, o: ReportOptions, gt: int) -> tuple[dict, dict, dict]:
    """Per compared method/reader: per-case metric arrays (NaN where unavailable), kinds, n cases."""
    ranks = an.values.astype(int)
    full = {k: m.ranks for k, m in an.methods.items() if m.mask.all()}
    summary = _ranking_summary(ranks, full, gt, o, an.readers)
    per_case, kinds = dict(summary["per_case"]), dict(summary["kind"])
    n = {name: an.n_cases for name in per_case}
    for key, m in an.methods.items():
        if key in full or not m.mask.any():
            continue
        part = _ranking_summary(ranks[m.mask][..., [gt]], {key: m.ranks[m.mask]}, 0, o, [an.readers[gt]])["per_case"][
            key
        ]
        per_case[key] = {metric: scatter(v, m.mask) for metric, v in part.items()}
        kinds[key], n[key] = "method", int(m.mask.sum())
    if o.ndcg_ties == "averaged":  # the headline nDCG of each method: tie-averaged (τ and ρ keep the tie-broken ranks)
        for key, m in an.methods.items():
            if key in per_case:
                for q in cutoffs(o.p, ranks.shape[1]):
                    per_case[key][f"ndcg@{q}"] = scatter(method_ndcg(m, ranks[..., gt], q, "averaged"), m.mask)
    return per_case, kinds, n


def _compared_block(values: dict, kind: str, n: int, metrics: list[str], o: ReportOptions) -> dict:
    """Mean of each per-case metric with its bootstrap CI over the cases where it is defined."""
    out = {}
    for metric in metrics:
        v = np.asarray(values[metric], float)
        v = v[~np.isnan(v)]
        out[metric] = est(float(v.mean()) if len(v) else None, ci(S.mean_statistic(v), len(v), o))
    return {"kind": kind, "n_cases": n, "metrics": out}


def _other_readers_mean(per_case: dict, others: list[str], metrics: list[str], o: ReportOptions) -> dict:
    """Mean over the non-ground-truth readers (the inter-rater level), cases and readers resampled."""
    if not others:
        return {}
    out = {}
    for metric in metrics:
        x = np.stack([per_case[r][metric] for r in others], axis=1)
        out[metric] = est(float(x.mean()), reader_mean_ci(x, o))
    return out


def _reader_tau_matrix(ranks: np.ndarray) -> list[list[float]]:
    """Mean per-case Kendall τ between every pair of readers (1 on the diagonal)."""
    n_readers = ranks.shape[-1]
    m = np.eye(n_readers)
    for i in range(n_readers):
        for j in range(i + 1, n_readers):
            m[i, j] = m[j, i] = float(np.mean(S.kendall_tau(ranks[..., i], ranks[..., j])))
    return m.tolist()


def section(an: Analysis, o: ReportOptions, *, gt_source: str = "") -> dict:
    """Papers 001/003: nDCG@p, Kendall τ, Spearman ρ of each method and reader against the ground truth."""
    n_cases, n_cand, _ = an.values.shape
    metrics = _metric_names(o, n_cand)
    per_case, kinds, n = _ranking_per_case(an, o, an.gt)
    others = [name for name, kind in kinds.items() if kind == "reader"]
    compared = {name: _compared_block(per_case[name], kinds[name], n[name], metrics, o) for name in per_case}
    random = {f"ndcg@{q}": S.expected_random_ndcg(n_cand, q) for q in cutoffs(o.p, n_cand)} if n_cand else {}
    random.update(kendall_tau=0.0, spearman_rho=0.0)
    band = (
        {
            met: [
                min(compared[r]["metrics"][met]["estimate"] for r in others),
                max(compared[r]["metrics"][met]["estimate"] for r in others),
            ]
            for met in metrics
        }
        if others
        else {}
    )
    return {
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "readers": an.readers,
        "ground_truth": an.readers[an.gt],
        "ground_truth_source": gt_source,
        "relevance": "(N + 1 - rank)/2 + 0.5 of the ground-truth reader's rank",
        "gain": "2^rel - 1",
        "discount": "log2(i + 1)",
        "p": cutoffs(o.p, n_cand),
        "p_asked": list(o.p),
        "ndcg_ties": o.ndcg_ties,
        "ndcg_ties_rule": NDCG_TIES[o.ndcg_ties],
        "metrics": metrics,
        "conventions": _conventions(an, o, n_cand),
        "tie_averaged": _tie_averaged(an, o, n_cand),
        "tie_broken": _tie_broken(an, o, n_cand),
        "random": random,
        "compared": compared,
        "inter_rater_band": band,
        "other_readers_mean": _other_readers_mean(per_case, others, metrics, o),
        "reader_kendall_tau": _reader_tau_matrix(an.values.astype(int)) if an.values.shape[-1] > 1 else None,
        "per_case": {
            "case_ids": an.case_ids.tolist(),
            "values": {
                name: {met: np.asarray(v).tolist() for met, v in vals.items()} for name, vals in per_case.items()
            },
        },
    }


def tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Permutation test of each method's mean nDCG@p against random orders; paired tests between methods."""
    truth = an.values.astype(int)[..., an.gt]
    vs_random: dict[str, dict] = {}
    for key, m in an.methods.items():
        if m.mask.sum() < 2:
            continue
        vs_random[key] = {
            f"ndcg@{q}": S.permutation_test_vs_random(
                m.ranks[m.mask],
                truth[m.mask],
                p=q,
                n_resamples=o.n_resamples,
                seed=o.seed,
                observed=float(method_ndcg(m, truth, q, o.ndcg_ties).mean()),
            )
            for q in cutoffs(o.p, truth.shape[1])
        }
    values = section["per_case"]["values"]
    pairs = []
    for metric in _metric_names(o, truth.shape[1]):
        pairs += method_pairs({k: np.asarray(values[k][metric], float) for k in an.methods if k in values}, o, metric)
    return {"vs_random": vs_random, "method_vs_method": pairs, "readers_random": _readers_random(an, o)}


def _readers_random(an: Analysis, o: ReportOptions) -> dict:
    """OR analysis of each pair of methods: FOM = a method's mean nDCG@p against each reader's ranking."""
    ranks = an.values.astype(int)
    pairs = []
    for q in cutoffs(o.p, ranks.shape[1]):
        scores = {
            key: scatter(
                np.stack([method_ndcg(m, ranks[..., r], q, o.ndcg_ties) for r in range(ranks.shape[2])], -1),
                m.mask,
            )
            for key, m in an.methods.items()
            if m.mask.any()
        }
        pairs += readers_random_pairs(scores, o, f"ndcg@{q}")
    return {
        "method": mrmc.OR_METHOD_FLOORED,
        "fom": "per reader: the method's nDCG@p with that reader's ranking as the reference, mean over cases"
        + (" (tie-averaged, ndcg_ties=averaged)" if o.ndcg_ties == "averaged" else ""),
        "method_vs_method": pairs,
    }


def headline(section: dict) -> dict[str, dict[str, float | None]]:
    """The mean of every metric of every compared method and reader (a block of a subgroup table)."""
    return {name: {met: v["estimate"] for met, v in c["metrics"].items()} for name, c in section["compared"].items()}


def reader_statistics(an: Analysis, section: dict, o: ReportOptions, reader: int) -> dict:
    """Every method scored against this reader's ranking as the reference."""
    per_case, _, _ = _ranking_per_case(an, o, reader)
    metrics = _metric_names(o, an.values.shape[1])
    return {k: {met: nanmean(per_case[k][met]) for met in metrics} for k in an.methods if k in per_case}
