"""The demo's DICOM files decode, and the synthetic CT series shows the middle slice."""

import numpy as np

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.dicom import read_dicom_header
from retrieval.imports.imaging.series import group_series, middle
from retrieval.imports.imaging.sniff import sniff_format
from retrieval.imports.phantoms import CT_SERIES_SLICES, demo_dicoms


def test_demo_dicoms_decode_and_group(tmp_path):
    paths = demo_dicoms(tmp_path)
    assert all(sniff_format(p.read_bytes()) == "dicom" for p in paths)
    decoded = {p.name: decode_image(p.read_bytes()) for p in paths}
    assert decoded["cr_monochrome1.dcm"].photometric == "MONOCHROME1"
    assert decoded["us_multiframe_ybr.dcm"].frame_index == 15
    headers = [(p, read_dicom_header(p.read_bytes())) for p in paths]
    groups = group_series(headers)
    series = [g for g in groups if len(g) > 1]
    assert len(series) == 1 and len(series[0]) == CT_SERIES_SLICES
    assert len(groups) == len(paths) - CT_SERIES_SLICES + 1
    chosen = middle(series[0])
    assert read_dicom_header(chosen.read_bytes()).instance_number == CT_SERIES_SLICES // 2 + 1
    image = decode_image(chosen.read_bytes())
    assert (image.window_center, image.window_width, image.window_source) == (40.0, 400.0, "dicom")
    uids = {h.sop_instance_uid for _, h in headers}
    assert len(uids) == len(paths)


def test_demo_dicoms_are_deterministic(tmp_path):
    first = [p.read_bytes() for p in demo_dicoms(tmp_path / "a")]
    second = [p.read_bytes() for p in demo_dicoms(tmp_path / "b")]
    assert first == second
    assert np.all([len(b) > 0 for b in first])
