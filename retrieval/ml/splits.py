"""Splits and task definitions (numpy only): patient-level splits, balanced binary tasks, numeric bins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
# Paper 000's "Opacity" task: any of these NIH ChestX-ray14 findings (spelled as in Data_Entry_2017.csv).
OPACITY_FINDINGS = (
    "Atelectasis",
    "Effusion",
    "Infiltration",
    "Pneumonia",
    "Consolidation",
    "Edema",
    "Fibrosis",
    "Pleural_Thickening",
)
NO_FINDING = "No Finding"
WEIGHT_EDGES_LBS = (150.0, 200.0)  # paper 000's CT weight classes: < 150, 150–200, > 200 lbs


def split_by_patient(
    patient_ids: Sequence[object] | np.ndarray,
    fractions: Sequence[float] = (0.6, 0.3, 0.1),
    seed: int = 0,
    names: Sequence[str] = SPLIT_NAMES,
) -> np.ndarray:
    """Split name per image; every patient's images land in one split, image fractions about as asked."""
    if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"need {len(names)} non-negative fractions summing to 1, got {tuple(fractions)}.")
    ids = np.asarray(patient_ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(counts))
    cumulative = np.cumsum(counts[order])
    midpoints = (cumulative - counts[order] / 2) / cumulative[-1]  # where each patient's images sit in [0, 1]
    patient_split = np.empty(len(counts), dtype=np.int64)
    patient_split[order] = np.searchsorted(np.cumsum(fractions)[:-1], midpoints, side="right")
    return np.asarray(names)[patient_split[inverse.reshape(-1)]]


def binary_task(
    labels: Mapping[str, Sequence[int] | np.ndarray],
    positive: Sequence[str],
    negative: Sequence[str] = (NO_FINDING,),
    *,
    undersample: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, y): positives have any `positive` label, negatives any `negative` label and no positive one.

    With `undersample`, the majority class is randomly reduced to the size of the minority (paper 000).
    """
    positives = _any_of(labels, positive)
    negatives = _any_of(labels, negative) & ~positives
    pos_idx, neg_idx = np.flatnonzero(positives), np.flatnonzero(negatives)
    if undersample:
        rng = np.random.default_rng(seed)
        size = min(len(pos_idx), len(neg_idx))
        pos_idx = rng.choice(pos_idx, size, replace=False)
        neg_idx = rng.choice(neg_idx, size, replace=False)
    indices = np.sort(np.concatenate([pos_idx, neg_idx]))
    return indices, positives[indices].astype(np.int64)


def _any_of(labels: Mapping[str, Sequence[int] | np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Boolean mask of items with at least one of the named 0/1 labels."""
    missing = [name for name in names if name not in labels]
    if missing or not names:
        raise KeyError(f"unknown label(s) {missing or names}; available: {sorted(labels)}.")
    columns = [np.asarray(labels[name]).astype(bool) for name in names]
    if len({len(c) for c in columns}) != 1:
        raise ValueError("label arrays differ in length.")
    return np.logical_or.reduce(columns)


def bin_numeric(values: Sequence[float] | np.ndarray, edges: Sequence[float] = WEIGHT_EDGES_LBS) -> np.ndarray:
    """Class per value for regression targets: bins are left-closed ([150, 200) → 1, 200 → 2); NaN → −1."""
    v = np.asarray(values, dtype=np.float64)
    classes = np.digitize(v, np.asarray(edges, dtype=np.float64), right=False)
    return np.where(np.isnan(v), -1, classes).astype(np.int64)
