"""Slices of one CT/MR series form a group sorted by position; middle() picks the middle."""

import numpy as np
import pytest

from retrieval.imports.imaging.dicom import DicomHeader, read_dicom_header
from retrieval.imports.imaging.series import group_series, middle
from retrieval.imports.phantoms import write_ct_series

from .samples import CT5N_SERIES, dataset_bytes, sample_bytes


def header(**overrides) -> DicomHeader:
    fields = dict(
        sop_instance_uid="1.2.3",
        study_uid="1.2",
        series_uid="1.2.9",
        modality="CT",
        view_position=None,
        rows=16,
        columns=16,
        frames=1,
        instance_number=None,
        slice_position=None,
        patient_id=None,
    )
    fields.update(overrides)
    return DicomHeader(**fields)


def test_synthetic_series_in_shuffled_files_groups_and_picks_the_middle_slice(tmp_path):
    paths = write_ct_series(tmp_path, slices=9)
    headers = [(path.name, read_dicom_header(path.read_bytes())) for path in paths]
    groups = group_series(headers)
    assert len(groups) == 1 and len(groups[0]) == 9
    by_name = dict(headers)
    positions = [by_name[name].slice_position for name in groups[0]]
    assert positions == sorted(positions)
    assert by_name[middle(groups[0])].instance_number == 5


def test_real_pydicom_ct_series_and_unrelated_images():
    keys = [f"dicomdirtests/98892001/CT5N/{name}" for name in CT5N_SERIES]
    keys = [keys[3], "CT_small.dcm", keys[0], keys[4], "MR_small.dcm", keys[2], keys[1]]
    headers = [(key, read_dicom_header(sample_bytes(key))) for key in keys]
    groups = group_series(headers)
    assert [len(group) for group in groups] == [5, 1, 1]
    assert groups[1] == ["CT_small.dcm"] and groups[2] == ["MR_small.dcm"]
    by_key = dict(headers)
    series = groups[0]
    positions = [by_key[key].slice_position for key in series]
    assert positions == sorted(positions)
    assert middle(series) == series[2]


def test_multiframe_and_projection_images_are_never_grouped():
    headers = [
        ("cr1", header(modality="CR", sop_instance_uid="1")),
        ("cr2", header(modality="CR", sop_instance_uid="2")),
        ("mf1", header(frames=30, sop_instance_uid="3", series_uid="7")),
        ("mf2", header(frames=30, sop_instance_uid="4", series_uid="7")),
        ("nouid", header(series_uid=None)),
    ]
    assert group_series(headers) == [["cr1"], ["cr2"], ["mf1"], ["mf2"], ["nouid"]]


def test_sort_falls_back_to_instance_number_then_input_order():
    headers = [
        ("c", header(instance_number=3)),
        ("a", header(instance_number=1)),
        ("x", header()),
        ("b", header(instance_number=2)),
    ]
    assert group_series(headers) == [["a", "b", "c", "x"]]


def test_slice_position_is_the_projection_on_the_slice_normal(ct_small):
    # Sagittal: rows along +y, columns along -z, so the normal (row × column) is -x.
    ct_small.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ct_small.ImagePositionPatient = [12.5, -3, 40]
    assert read_dicom_header(dataset_bytes(ct_small)).slice_position == pytest.approx(-12.5)
    # Oblique axial, tilted by 0.3 rad about x.
    ct_small.ImageOrientationPatient = [1, 0, 0, 0, np.cos(0.3), np.sin(0.3)]
    normal = np.cross([1, 0, 0], [0, np.cos(0.3), np.sin(0.3)])
    expected = float(np.dot(normal, [12.5, -3, 40]))
    assert read_dicom_header(dataset_bytes(ct_small)).slice_position == pytest.approx(expected)


def test_slice_position_falls_back_to_slice_location_then_instance_number(ct_small):
    del ct_small.ImagePositionPatient
    ct_small.SliceLocation = "-77.25"
    assert read_dicom_header(dataset_bytes(ct_small)).slice_position == -77.25
    del ct_small.SliceLocation
    ct_small.InstanceNumber = 8
    assert read_dicom_header(dataset_bytes(ct_small)).slice_position == 8.0


def test_middle_of_even_and_empty_groups():
    assert middle([1, 2, 3, 4]) == 3
    with pytest.raises(ValueError):
        middle([])
