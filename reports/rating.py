"""Rating studies: ICC and weighted κ between readers, correlation of ratings with each method's distances.

The same five as every answer mode's module (see reports.choose_k).
"""

from __future__ import annotations

from collections.abc import Callable

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
    quiet,
    readers_random_ci,
    readers_random_pairs,
    scatter,
)
from reports.options import ReportOptions

NAME = "rating"
BY_READER_NOTE = ""
CASE_SPEARMAN_RULE = (
    "per case, the Spearman ρ of each reader's ratings with the distances, averaged over readers; a reader "
    "with constant ratings in a case (ρ undefined) is left out of that case's mean (n_left_out reader-cases), "
    "and a case where every reader is constant is left out of the mean over cases"
)
ICC_KINDS = {"ICC(A,1)": "ICC2", "ICC(C,1)": "ICC3", "ICC(A,k)": "ICC2k"}


def _icc_block(items: np.ndarray, n_cases: int, n_cand: int, o: ReportOptions) -> dict:
    """ICC(A,1) with a case-clustered bootstrap CI; ICC(C,1), ICC(A,k) as point estimates."""
    if items.shape[0] < 2 or items.shape[1] < 2:
        return {name: est(None) for name in ICC_KINDS}
    cluster = np.repeat(np.arange(n_cases), n_cand)
    out = {name: est(S.icc(items, kind=kind)) for name, kind in ICC_KINDS.items()}
    stat = S.icc_statistic(items, kind="ICC2")
    n_readers = items.shape[1]

    def jackknife() -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # without each case, each reader, both
        def value(k: int | None, j: int | None) -> float:
            x = items if k is None else items[cluster != k]
            return S.icc(x if j is None else np.delete(x, j, axis=1), kind="ICC2")

        cases = np.array([value(k, None) for k in range(n_cases)])
        readers = np.array([value(None, j) for j in range(n_readers)])
        return cases, readers, np.array([[value(k, j) for j in range(n_readers)] for k in range(n_cases)])

    interval = (
        readers_random_ci(
            stat,
            len(items),
            o,
            jackknife,
            fisher_z=True,
            df="readers",
            n_readers=n_readers,
            vectorized=False,
            cluster=cluster,
        )
        if n_cases >= 2
        else None
    )
    out["ICC(A,1)"] = est(out["ICC(A,1)"]["estimate"], interval)
    if interval and "readers" in interval["resampled"]:
        out["ICC(A,1)"] |= {"readers_rule": S.READERS_RANDOM_RULE, "n_failed": interval["n_failed"]}
    return out


def _weighted_kappa_block(x: np.ndarray, labels: np.ndarray, o: ReportOptions) -> dict:
    """Quadratic-weighted Cohen κ between every pair of readers; its mean with a case-bootstrap CI."""
    n_cases, _, n_readers = x.shape
    off = ~np.eye(n_readers, dtype=bool)
    matrix = S.pairwise_cohen_kappa(x.reshape(-1, n_readers), weights="quadratic", labels=labels)
    linear = S.pairwise_cohen_kappa(x.reshape(-1, n_readers), weights="linear", labels=labels)
    return {
        "weights": "quadratic",
        "matrix": matrix.tolist(),
        "mean": est(
            float(matrix[off].mean()), ci(_weighted_kappa_statistic(x, labels), n_cases, o) if o.n_resamples else None
        ),
        "mean_linear": float(linear[off].mean()),
    }


def _weighted_kappa_statistic(x: np.ndarray, labels: np.ndarray) -> Callable:
    """Vectorised statistic: mean pairwise quadratic κ from per-case (reader, reader) confusion counts."""
    n_readers = x.shape[-1]
    onehot = np.eye(len(labels))[np.searchsorted(labels, x.astype(int))]  # (C, M, R, K)
    conf = np.einsum("cmrk,cmsl->crskl", onehot, onehot, optimize=True)
    off = ~np.eye(n_readers, dtype=bool)

    def stat(w: np.ndarray) -> np.ndarray:
        k = S.kappa_from_confusion(np.tensordot(w, conf, axes=(-1, 0)), weights="quadratic")
        return k[..., off].mean(-1)

    return stat


def _rating_method(x: np.ndarray, m: MethodView, an: Analysis, o: ReportOptions) -> dict:
    """Correlation of ratings with a method's distances: pooled, per reader, mean per-case Spearman."""
    n = int(m.mask.sum())
    if not n:
        return {"available": False, "n_cases": 0}
    r, d = x[m.mask], m.distances[m.mask]
    per_case = quiet(S.spearman_rho, np.moveaxis(r, -1, 1), d[:, None, :])  # (C, R)
    case_mean = quiet(np.nanmean, per_case, axis=1)
    case_mean = case_mean[~np.isnan(case_mean)]
    return {
        "available": True,
        "n_cases": n,
        "correlation": quiet(S.distance_rating_correlation, r.reshape(-1, r.shape[-1]), d.ravel()),
        "per_reader_spearman": {
            name: quiet(S.distance_rating_correlation, r[..., i].ravel(), d.ravel())["spearman"]
            for i, name in enumerate(an.readers)
        },
        "mean_case_spearman": est(
            float(case_mean.mean()) if len(case_mean) else None, ci(S.mean_statistic(case_mean), len(case_mean), o)
        )
        | {"rule": CASE_SPEARMAN_RULE, "n_left_out": int(np.isnan(per_case).sum()), "n_cases_used": len(case_mean)},
        "mean_rating_by_model_rank": np.nanmean(
            np.take_along_axis(r.mean(-1), np.argsort(m.ranks[m.mask], axis=1), axis=1), axis=0
        ).tolist(),
    }


def section(an: Analysis, o: ReportOptions) -> dict:
    """Rating studies: ICC and weighted κ between readers, correlation of ratings with model distances."""
    x = an.values.astype(float)
    n_cases, n_cand, n_readers = x.shape
    items = x.reshape(-1, n_readers)
    # the study's scale, plus any value outside it (the reading services refuse those; old data may not)
    labels = np.union1d(np.arange(an.scale[0], an.scale[1] + 1), np.unique(x)).astype(int)
    inter = n_readers >= 2 and n_cases >= 1
    return {
        "scale": list(an.scale),
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "n_items": n_cases * n_cand,
        "readers": an.readers,
        "reader_mean_rating": {
            name: float(items[:, i].mean()) if len(items) else None for i, name in enumerate(an.readers)
        },
        "icc": quiet(_icc_block, items, n_cases, n_cand, o),
        "weighted_kappa": _weighted_kappa_block(x, labels, o) if inter else None,
        "krippendorff_alpha_ordinal": est(quiet(S.krippendorff_alpha, items, level="ordinal") if inter else None),
        "krippendorff_alpha_interval": est(quiet(S.krippendorff_alpha, items, level="interval") if inter else None),
        "methods": {key: _rating_method(x, m, an, o) for key, m in an.methods.items()},
    }


def tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Mean per-case Spearman ρ (ratings vs distances) against 0; paired tests between methods."""
    x = an.values.astype(float)
    per_case, per_reader = {}, {}
    for key, m in an.methods.items():
        if m.mask.any():
            rho = quiet(S.spearman_rho, np.moveaxis(x[m.mask], -1, 1), m.distances[m.mask][:, None, :])
            per_case[key] = scatter(quiet(np.nanmean, rho, axis=1), m.mask)
            per_reader[key] = scatter(rho, m.mask)
    vs_random = {}
    for key, v in per_case.items():
        v = v[~np.isnan(v)]
        if len(v) >= 2:
            vs_random[key] = {"statistic": "mean per-case Spearman rho", **paired_tests(v, np.zeros(len(v)), o)}
    return {
        "vs_random": vs_random,
        "method_vs_method": method_pairs(per_case, o, "mean per-case Spearman rho"),
        "readers_random": {
            "method": mrmc.OR_METHOD_FLOORED,
            "fom": "per reader: Spearman ρ of the reader's ratings with the distances, mean over cases "
            "(cases where a reader is constant are left out of the comparison)",
            "method_vs_method": readers_random_pairs(per_reader, o, "per-case Spearman rho"),
        },
    }


def headline(section: dict) -> dict[str, dict[str, float | None]]:
    """ICC(A,1) and mean weighted κ between readers, each method's correlations (a block of a subgroup table)."""
    rows = {
        "readers": {
            "icc_a1": section["icc"]["ICC(A,1)"]["estimate"],
            "mean_weighted_kappa": (section["weighted_kappa"] or {}).get("mean", {}).get("estimate"),
        }
    }
    for key, m in section["methods"].items():
        if m["available"]:
            rows[key] = {
                "spearman": m["correlation"]["spearman"],
                "mean_case_spearman": m["mean_case_spearman"]["estimate"],
            }
    return rows


def reader_statistics(an: Analysis, section: dict, o: ReportOptions, reader: int) -> dict:
    """One reader's mean rating and the Spearman ρ of their ratings with each method's distances."""
    name = an.readers[reader]
    stats = {"reader": {"mean_rating": section["reader_mean_rating"][name]}}
    stats |= {k: {"spearman": m["per_reader_spearman"][name]} for k, m in section["methods"].items() if m["available"]}
    return stats
