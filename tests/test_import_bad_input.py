"""Bad input: each problem gets a precise per-file message, good files still import, nothing half-done."""

import io
import zipfile

import pytest
from PIL import Image as PILImage

from retrieval.models import Image, ImportJob, Label
from tests.factories import csv_bytes, dicom_sample, dicom_with, png_bytes, write_files
from tests.importing import report_for, run_import, stored_name

pytestmark = pytest.mark.django_db


def _stored_files(settings):
    return sorted(p.name for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()) if settings.MEDIA_ROOT.exists() else []


def test_non_image_and_truncated_dicom_are_reported_good_files_import(tmp_path, settings):
    dicom = dicom_sample()
    src = write_files(
        tmp_path / "s",
        {
            "good.png": png_bytes(1),
            "notes.docx": b"PK\x03\x04 not really an image",
            "broken.dcm": dicom[: len(dicom) // 2],
            "empty.png": b"",
        },
    )
    job = run_import(source=src)
    assert job.status == "succeeded"
    assert job.n_imported == 1 and job.n_failed == 3
    assert report_for(job, "notes.docx")[0]["message"] == "not a DICOM, PNG or JPEG file"
    broken = report_for(job, "broken.dcm")[0]
    assert broken["status"] == "failed" and broken["message"]
    assert list(Image.objects.values_list("source_name", flat=True)) == [stored_name(job.dataset, "good.png")]
    # exactly the three files of the one good image are stored
    assert len(_stored_files(settings)) == 3


def test_decompression_bomb_is_refused(tmp_path, settings):
    settings.IMPORT_MAX_PIXELS = 1_000_000
    buf = io.BytesIO()
    PILImage.new("1", (5000, 5000)).save(buf, format="PNG")  # a tiny file of 25 megapixels
    src = write_files(tmp_path / "s", {"bomb.png": buf.getvalue(), "ok.png": png_bytes(2)})
    job = run_import(source=src)
    message = report_for(job, "bomb.png")[0]["message"]
    assert "exceed" in message and "1,000,000" in message
    assert Image.objects.count() == 1


def test_zip_with_unsafe_paths(tmp_path, settings):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/fine.png", png_bytes(1))
        zf.writestr(zipfile.ZipInfo("../escape.png"), png_bytes(2))
        zf.writestr(zipfile.ZipInfo("/etc/abs.png"), png_bytes(3))
        zf.writestr(zipfile.ZipInfo("a/../../up.png"), png_bytes(4))
    archive = tmp_path / "a.zip"
    archive.write_bytes(buf.getvalue())
    job = run_import(source=archive)
    assert job.n_imported == 1
    assert "'..' in archive path refused" in report_for(job, "../escape.png")[0]["message"]
    assert "absolute path" in report_for(job, "/etc/abs.png")[0]["message"]
    assert "'..'" in report_for(job, "a/../../up.png")[0]["message"]
    assert not (tmp_path / "escape.png").exists()


def test_oversized_zip_member_is_refused_before_reading(tmp_path, settings):
    settings.IMPORT_MAX_FILE_BYTES = 10_000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\0" * 5_000_000)  # compresses to a few kB
        zf.writestr("ok.png", png_bytes(1))
    archive = tmp_path / "a.zip"
    archive.write_bytes(buf.getvalue())
    job = run_import(source=archive)
    assert "exceed the limit of 10,000" in report_for(job, "zeros.png")[0]["message"]
    assert job.n_imported == 1


def test_corrupt_archive_fails_the_job_with_a_message(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    job = run_import(source=archive)
    assert job.status == "failed"
    assert "source: not a readable zip archive" in job.error and "a.zip" not in job.error
    assert Image.objects.count() == 0


def test_duplicates_by_content_and_by_sop_instance_uid(tmp_path):
    same = png_bytes(5)
    ct = dicom_sample()
    ct_resaved = dicom_with(PatientName="Someone^Else")  # other bytes, same SOPInstanceUID
    src = write_files(tmp_path / "s", {"a.png": same, "copy.png": same, "ct.dcm": ct, "ct2.dcm": ct_resaved})
    job = run_import(source=src)
    assert job.n_imported == 2 and job.n_skipped == 2
    messages = {r["file"]: r["message"] for r in job.report if r["status"] == "skipped"}
    assert "same content" in next(m for f, m in messages.items() if f.endswith(".png"))
    assert "same SOPInstanceUID" in next(m for f, m in messages.items() if f.endswith(".dcm"))


def test_malformed_csv_stops_before_any_image(tmp_path):
    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    labels = tmp_path / "l.csv"
    labels.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary junk \x00\x01")
    job = run_import(source=src, labels=labels)
    assert job.status == "failed" and job.error
    assert Image.objects.count() == 0 and Label.objects.count() == 0


def test_missing_filename_column_is_named(tmp_path):
    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    labels = tmp_path / "l.csv"
    labels.write_bytes(csv_bytes([["Path", "Cardiomegaly"], ["a.png", "1"]]))
    job = run_import(source=src, labels=labels, fmt="nih")
    assert job.status == "failed"
    assert "Image Index" in job.error
    assert Image.objects.count() == 0


def test_failed_import_does_not_touch_stored_images(tmp_path, settings):
    run_import(source=write_files(tmp_path / "s1", {"a.png": png_bytes(1)}))
    before = _stored_files(settings)
    labels = tmp_path / "bad.csv"
    labels.write_bytes(b"\xff\xfe\x00garbage\x00")
    run_import(source=write_files(tmp_path / "s2", {"a.png": png_bytes(1), "b.png": png_bytes(2)}), labels=labels)
    assert _stored_files(settings) == before
    assert Image.objects.count() == 1


def test_failure_while_storing_leaves_no_files(tmp_path, settings, monkeypatch):
    from retrieval.imports import ingest

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest.Label.objects, "bulk_create", explode)
    labels = tmp_path / "l.csv"
    labels.write_bytes(csv_bytes([["filename", "grade"], ["a.png", "1"]]))
    job = run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1)}), labels=labels)
    assert job.status == "failed" and "disk full" in job.error
    assert Image.objects.count() == 0
    assert _stored_files(settings) == []
    assert ImportJob.objects.get().finished_at is not None
