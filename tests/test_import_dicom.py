"""DICOM import: windowing metadata, series → middle slice, de-identification, compressed files."""

from pathlib import Path

import pydicom
import pytest

from retrieval.models import Image
from tests.factories import dicom_sample, dicom_with, write_files
from tests.importing import report_for, run_import, stored_name

pytestmark = pytest.mark.django_db

PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-123456",
    "PatientBirthDate": "19700101",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "Who^Doctor",
}


def test_dicom_metadata_and_window(tmp_path):
    job = run_import(source=write_files(tmp_path / "s", {"ct.dcm": dicom_sample("CT_small.dcm")}))
    assert job.n_imported == 1, job.report
    image = Image.objects.get()
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert image.source_format == "dicom" and image.modality == "CT"
    assert image.sop_instance_uid == ds.SOPInstanceUID and image.series_uid == ds.SeriesInstanceUID
    assert (image.width, image.height) == (ds.Columns, ds.Rows)
    if "WindowCenter" in ds:
        assert image.window_source == "dicom"
    else:
        assert image.window_source == "fallback" and image.window_width > 0


def test_patient_identifiers_never_stored(tmp_path):
    data = dicom_with(**PHI)
    run_import(source=write_files(tmp_path / "s", {"ct.dcm": data}))
    image = Image.objects.get()
    row = " ".join(str(v) for v in Image.objects.values().get().values())
    for value in PHI.values():
        assert value not in row
    stored = pydicom.dcmread(image.original.path)
    assert str(stored.PatientID) == image.patient_pseudo_id
    for keyword in ("PatientName", "PatientBirthDate", "InstitutionName", "ReferringPhysicianName"):
        assert str(stored.get(keyword, "")) in ("", image.patient_pseudo_id), keyword
    raw = open(image.original.path, "rb").read()
    for value in PHI.values():
        assert value.encode() not in raw
    original = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert (stored.pixel_array == original.pixel_array).all()


def test_same_dicom_patient_same_pseudonym(tmp_path):
    from pydicom.uid import generate_uid

    a = dicom_with(PatientID="MRN-1", SOPInstanceUID=generate_uid())
    b = dicom_with(PatientID="MRN-1", SOPInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    c = dicom_with(PatientID="MRN-2", SOPInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    run_import(source=write_files(tmp_path / "s", {"a.dcm": a, "b.dcm": b, "c.dcm": c}))
    ids = {image.source_name: image.patient_pseudo_id for image in Image.objects.select_related("dataset")}
    a, b, c = (stored_name(Image.objects.first().dataset, f"{n}.dcm") for n in "abc")
    assert ids[a] == ids[b] != ids[c]


def test_ct_series_becomes_its_middle_slice(tmp_path):
    from pydicom.uid import generate_uid

    series = generate_uid()
    files = {}
    for i in range(7):
        files[f"series/slice{i}.dcm"] = dicom_with(
            SeriesInstanceUID=series,
            SOPInstanceUID=generate_uid(),
            InstanceNumber=i + 1,
            ImagePositionPatient=[0.0, 0.0, 10.0 * (6 - i)],  # files in reverse anatomical order
        )
    job = run_import(source=write_files(tmp_path / "s", files))
    assert job.n_imported == 1, job.report
    image = Image.objects.get()
    assert image.slices_in_series == 7
    assert image.source_name == stored_name(job.dataset, "series/slice3.dcm")  # z = 30 is the middle of 0..60


@pytest.mark.parametrize("sample", ["JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_RLE.dcm", "JPEGLSNearLossless_08.dcm"])
def test_compressed_transfer_syntaxes_import(tmp_path, sample):
    job = run_import(source=write_files(tmp_path / "s", {sample: dicom_sample(sample)}))
    assert job.n_imported == 1, job.report


def test_undecodable_compressed_file_is_reported_and_others_import(tmp_path):
    # pydicom's JPEG-lossy.dcm is 12-bit JPEG Extended with a malformed scan: no plugin decodes it
    job = run_import(
        source=write_files(
            tmp_path / "s", {"bad.dcm": dicom_sample("JPEG-lossy.dcm"), "ok.dcm": dicom_sample("MR_small.dcm")}
        )
    )
    assert job.status == "succeeded" and job.n_imported == 1 and job.n_failed == 1
    failed = report_for(job, "bad.dcm")[0]
    assert failed["status"] == "failed" and "12-bit" in failed["message"]


def test_a_decoder_plugin_that_fails_before_another_succeeds_logs_no_traceback(tmp_path, caplog):
    """12-bit JPEG Extended: Pillow fails, pylibjpeg decodes; the import succeeds without error logs."""
    import logging

    from pydicom.data import get_testdata_file

    src = tmp_path / "src"
    src.mkdir()
    (src / "nm.dcm").write_bytes(Path(get_testdata_file("JPGExtended.dcm")).read_bytes())
    with caplog.at_level(logging.DEBUG):  # the root handler takes everything that loggers pass on
        job = run_import(source=src)
    assert job.status == "succeeded" and job.n_imported == 1, job.report
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= logging.ERROR]
