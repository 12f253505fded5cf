"""retrieval.ml.splits: patient-level splits, binary tasks with undersampling, numeric bins."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.ml.splits import OPACITY_FINDINGS, bin_numeric, binary_task, split_by_patient


def patients(n_patients: int = 300, seed: int = 0) -> np.ndarray:
    """Patient id per image, 1–6 images per patient, rows shuffled."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i:04d}" for i in range(n_patients)], rng.integers(1, 7, n_patients))
    return rng.permutation(ids)


def test_no_patient_in_two_splits():
    ids = patients()
    split = split_by_patient(ids, seed=1)
    for patient in np.unique(ids):
        assert len(set(split[ids == patient])) == 1


def test_fractions_approximately_respected():
    ids = patients(1000)
    split = split_by_patient(ids, (0.6, 0.3, 0.1), seed=2)
    shares = [np.mean(split == name) for name in ("train", "val", "test")]
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.03)


def test_reproducible_from_seed_and_independent_of_row_order():
    ids = patients()
    first = split_by_patient(ids, seed=3)
    assert (split_by_patient(ids, seed=3) == first).all()
    assert (split_by_patient(ids, seed=4) != first).any()
    order = np.random.default_rng(0).permutation(len(ids))
    assert (split_by_patient(ids[order], seed=3) == first[order]).all()


def test_bad_fractions_rejected():
    with pytest.raises(ValueError):
        split_by_patient(["a", "b"], (0.5, 0.6, 0.1))


def nih_labels(n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Toy NIH-style 0/1 columns: each image has "No Finding" or a few findings."""
    rng = np.random.default_rng(seed)
    names = [*OPACITY_FINDINGS, "Cardiomegaly", "Emphysema"]
    findings = (rng.random((n, len(names))) < 0.06).astype(int)
    labels = {name: findings[:, j] for j, name in enumerate(names)}
    labels["No Finding"] = (findings.sum(axis=1) == 0).astype(int)
    return labels


def test_opacity_union_vs_no_finding_balanced():
    labels = nih_labels()
    indices, y = binary_task(labels, OPACITY_FINDINGS, ["No Finding"], undersample=True, seed=5)
    opacity = np.logical_or.reduce([labels[f].astype(bool) for f in OPACITY_FINDINGS])
    assert (y == opacity[indices]).all()
    assert y.sum() == (1 - y).sum() == opacity.sum()  # negatives reduced to the number of positives
    assert labels["No Finding"][indices[y == 0]].all()
    assert (np.diff(indices) > 0).all()


def test_binary_task_without_undersampling_keeps_all():
    labels = nih_labels()
    indices, y = binary_task(labels, ["Cardiomegaly"], undersample=False)
    assert y.sum() == labels["Cardiomegaly"].sum()
    assert (1 - y).sum() == labels["No Finding"].sum()


def test_binary_task_excludes_items_that_are_both():
    labels = {"A": np.array([1, 1, 0, 0]), "No Finding": np.array([0, 1, 1, 1])}
    indices, y = binary_task(labels, ["A"], undersample=False)
    assert indices.tolist() == [0, 1, 2, 3] and y.tolist() == [1, 1, 0, 0]


def test_binary_task_unknown_label():
    with pytest.raises(KeyError):
        binary_task({"A": np.array([1])}, ["B"])


def test_bin_numeric_weight_classes():
    assert bin_numeric([120, 149.9, 150, 199.9, 200, 260, np.nan]).tolist() == [0, 0, 1, 1, 2, 2, -1]
    assert bin_numeric([1, 5, 10], edges=(5,)).tolist() == [0, 1, 1]
