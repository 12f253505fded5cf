"""Phantoms draw what their parameters say, and are reproducible from the seed."""

import csv

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_otsu

from retrieval.imports.labels import parse_label_table
from retrieval.imports.phantoms import (
    CARDIOMEGALY_CTR,
    GENERIC_COLUMNS,
    _image_params,
    _patient_habitus,
    generate_chest_phantoms,
    render_chest,
    write_demo_collection,
)


def lung_mask(pixels: np.ndarray) -> np.ndarray:
    """The two largest dark regions inside the body (Otsu threshold on a smoothed image)."""
    smooth = ndimage.uniform_filter(pixels.astype(np.float32), 5)
    body = smooth > 40
    dark = (smooth < threshold_otsu(smooth[body])) & body
    labels, count = ndimage.label(dark)
    sizes = ndimage.sum(dark, labels, range(1, count + 1))
    return np.isin(labels, np.argsort(sizes)[::-1][:2] + 1)


def measured_ctr(pixels: np.ndarray) -> float:
    """Maximal heart width / maximal thorax width, measured row by row on the lungs as a
    radiologist does, above the diaphragm (the lowest 8 % of the lung height)."""
    lung = lung_mask(pixels)
    rows = np.flatnonzero(lung.any(axis=1))
    top, bottom = rows[0], rows[-1]
    center = pixels.shape[1] // 2
    heart = thorax = 0
    for r in range(top, bottom - int(0.08 * (bottom - top))):
        cols = np.flatnonzero(lung[r])
        left, right = cols[cols < center], cols[cols > center]
        if len(left) and len(right):
            thorax = max(thorax, right.max() - left.min())
            heart = max(heart, right.min() - left.max())
    return heart / thorax


@pytest.fixture(scope="module")
def phantoms():
    return generate_chest_phantoms(120, seed=11)


def test_measured_heart_to_thorax_ratio_follows_the_ctr_parameter(phantoms):
    ctr = np.array([p.params["ctr"] for p in phantoms])
    measured = np.array([measured_ctr(p.pixels) for p in phantoms])
    assert np.corrcoef(ctr, measured)[0, 1] > 0.9
    clear = np.array([p.params["effusion_height"] == 0 for p in phantoms])  # no silhouette
    assert np.corrcoef(ctr[clear], measured[clear])[0, 1] > 0.97
    assert np.abs(ctr[clear] - measured[clear]).mean() < 0.02


def controlled(**overrides):
    rng = np.random.default_rng(5)
    habitus = _patient_habitus(rng)
    params = _image_params(rng, habitus)
    params.update(ctr=0.45, effusion_height=0.0, opacity=0.0, rotation_deg=0.0, noise=0.01)
    params.update(overrides)
    return habitus, params


def test_effusion_raises_the_lateral_lung_base_on_its_side():
    rises = []
    for height in np.linspace(0.0, 0.3, 7):
        habitus, params = controlled(effusion_height=height, effusion_side="right")
        lung = lung_mask(render_chest(habitus, params, 256))
        cols = np.flatnonzero(lung.any(axis=0))
        lateral_right = lung[:, cols[0] : cols[0] + 12]  # image left = patient right
        lateral_left = lung[:, cols[-1] - 11 : cols[-1] + 1]
        rises.append(_lowest_row(lateral_left) - _lowest_row(lateral_right))
    assert rises[0] <= 3
    assert all(b >= a for a, b in zip(rises, rises[1:]))
    assert rises[-1] > 25


def test_opacity_brightens_its_lung_in_proportion():
    habitus, params = controlled(opacity=0.0, opacity_side="left")
    clear = render_chest(habitus, params, 256).astype(float)
    gains = []
    for intensity in (0.2, 0.5, 0.8, 1.0):
        params["opacity"] = intensity
        gains.append((render_chest(habitus, params, 256).astype(float) - clear)[:, 128:].sum())
    assert all(b > a > 0 for a, b in zip(gains, gains[1:]))
    assert np.corrcoef([0.2, 0.5, 0.8, 1.0], gains)[0, 1] > 0.99


def test_labels_are_the_documented_thresholds(phantoms):
    for p in phantoms:
        assert p.labels["Cardiomegaly"] == float(p.params["ctr"] > CARDIOMEGALY_CTR)
        assert p.labels["Effusion"] == float(p.params["effusion_height"] > 0.08)
        assert p.labels["Opacity"] == float(p.params["opacity"] > 0.4)
        findings = p.labels["Cardiomegaly"] + p.labels["Effusion"] + p.labels["Opacity"]
        assert p.labels["No Finding"] == float(findings == 0)
    for name in ("Cardiomegaly", "Effusion", "Opacity", "No Finding"):
        share = np.mean([p.labels[name] for p in phantoms])
        assert 0.1 < share < 0.9, name


def test_patients_have_two_or_three_follow_ups_and_look_alike(phantoms):
    by_patient = {}
    for p in phantoms:
        by_patient.setdefault(p.patient_id, []).append(p)
    sizes = [len(v) for v in list(by_patient.values())[:-1]]  # the last one may be cut
    assert set(sizes) <= {2, 3}
    flat = {p.filename: p.pixels.astype(np.float32).ravel() for p in phantoms}
    same, other = [], []
    groups = list(by_patient.values())
    for i, group in enumerate(groups[:-1]):
        same.append(np.corrcoef(flat[group[0].filename], flat[group[1].filename])[0, 1])
        other.append(np.corrcoef(flat[group[0].filename], flat[groups[i + 1][0].filename])[0, 1])
    assert np.mean(same) > np.mean(other)


def test_reproducible_from_the_seed():
    a = generate_chest_phantoms(7, seed=42, size=128)
    b = generate_chest_phantoms(7, seed=42, size=128)
    c = generate_chest_phantoms(7, seed=43, size=128)
    assert [p.params for p in a] == [p.params for p in b]
    assert all(np.array_equal(p.pixels, q.pixels) for p, q in zip(a, b))
    assert not np.array_equal(a[0].pixels, c[0].pixels)
    longer = generate_chest_phantoms(12, seed=42, size=128)
    assert np.array_equal(longer[4].pixels, a[4].pixels)  # prefix up to the last patient


def test_shape_dtype_and_views(phantoms):
    assert all(p.pixels.shape == (512, 512) and p.pixels.dtype == np.uint8 for p in phantoms)
    assert {p.view_position for p in phantoms} == {"PA", "AP"}
    assert len({p.filename for p in phantoms}) == len(phantoms)


def test_demo_collection_tables_parse_in_both_formats(tmp_path):
    csv_path = write_demo_collection(tmp_path, 10, seed=3)
    assert csv_path == tmp_path / "labels.csv"
    with csv_path.open() as handle:
        assert tuple(next(csv.reader(handle))) == GENERIC_COLUMNS
    rows, problems = parse_label_table(csv_path.read_bytes(), "generic")
    assert problems == [] and len(rows) == 10
    assert all((tmp_path / row.key).is_file() for row in rows)
    nih_rows, nih_problems = parse_label_table((tmp_path / "Data_Entry_2017.csv").read_bytes(), "nih")
    assert nih_problems == []
    generic = {row.key: row for row in rows}
    for row in nih_rows:
        assert row.labels["Cardiomegaly"] == generic[row.key].labels["Cardiomegaly"]
        assert row.labels["Effusion"] == generic[row.key].labels["Effusion"]
        assert row.labels["Consolidation"] == generic[row.key].labels["Opacity"]
        assert row.labels["No Finding"] == generic[row.key].labels["No Finding"]
        assert row.patient_id == generic[row.key].patient_id


def _lowest_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.any(axis=1))[-1])
