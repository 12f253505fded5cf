"""Subgroup tables of a report: the headline statistics by query modality, by query class, by reader.

Each group's statistics are recomputed on its cases without bootstrap; a split into more than
`MAX_GROUPS` groups is not tabulated (the report says so).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from reports.analysis import Analysis, ReportInputs, quiet
from reports.options import ReportOptions

MAX_GROUPS = 30


def _split(an: Analysis, keys: list[str], o: ReportOptions, mode: ModuleType) -> dict:
    """Headline statistics recomputed on each group of cases (no bootstrap)."""
    labels = np.asarray(keys, dtype=object)
    groups = sorted(set(keys))
    if len(groups) > MAX_GROUPS:
        return {"groups": {}, "note": f"{len(groups)} groups: too many to tabulate (at most {MAX_GROUPS})."}
    out = {}
    for g in groups:
        sub = an.subset(labels == g)
        section = quiet(mode.section, sub, o)
        out[g] = {"n_cases": sub.n_cases, "statistics": mode.headline(section)}
    return {"groups": out, "note": ""}


def _by_reader(an: Analysis, section: dict, o: ReportOptions, mode: ModuleType) -> dict:
    """One block per reader: agreement (choose-k), methods scored against that reader (ranking), ratings."""
    rows = {
        name: {"n_cases": an.n_cases, "statistics": mode.reader_statistics(an, section, o, i)}
        for i, name in enumerate(an.readers)
    }
    return {"groups": rows, "note": mode.BY_READER_NOTE}


def subgroups(
    inputs: ReportInputs, use: np.ndarray, an: Analysis, section: dict, o: ReportOptions, mode: ModuleType
) -> dict:
    """Subgroup tables: by query modality, by query class (when a label is chosen), by reader.

    `mode` is the study's answer-mode module (reports.choose_k, reports.ranking or reports.rating).
    """
    plain = o.without_bootstrap()
    out = {
        "modality": {
            "key": "query modality",
            **_split(an, [m for m, u in zip(inputs.arrays.modality, use) if u], plain, mode),
        }
    }
    if inputs.classes is not None:
        out["query_class"] = {
            "key": f"query label {o.class_label!r}",
            **_split(an, [c for c, u in zip(inputs.classes, use) if u], plain, mode),
        }
    out["reader"] = {"key": "reader", **_by_reader(an, section, plain, mode)}
    return out
