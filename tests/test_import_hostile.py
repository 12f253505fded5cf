"""Issue 15, import side: a 100,000-member zip, a full disk, an image committed by a concurrent import, two
imports of one folder at once (PostgreSQL and SQLite), the report page's pages. The bad-input corpus itself is
tests/test_import_corpus.py."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import zipfile

import pytest

from retrieval.imports import ingest
from retrieval.models import Dataset, Image, ImportJob
from tests.conftest import ROOT, client_for, worker_database_url
from tests.factories import png_bytes, write_files
from tests.importing import report_for, run_import, stored_name

pytestmark = pytest.mark.django_db


def _media_files(settings) -> set[str]:
    media = settings.MEDIA_ROOT
    return {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()} if media.exists() else set()


def _referenced() -> set[str]:
    return {
        path
        for image in Image.objects.all()
        for path in (image.original.name, image.rendition.name, image.thumbnail.name, image.values.name)
        if path
    }


def test_a_100000_member_zip_is_streamed_and_reported_in_bounded_lines(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("x")
        for i in range(99_999):
            info.filename = info.orig_filename = f"tiny/{i:05d}.png"
            zf.writestr(info, b"")  # empty: refused after its first (zero) bytes
        zf.writestr("good.png", png_bytes(1))
    started = time.monotonic()
    job = run_import(source=archive)
    elapsed = time.monotonic() - started
    assert job.status == "succeeded" and job.n_imported == 1 and job.n_failed == 99_999
    # reopening the archive per member (the old reader) made this quadratic: days for 100,000 members
    assert elapsed < 240, elapsed
    assert len(job.report) <= ingest.REPORT_MAX_LINES + 5
    assert job.report[-1]["message"] == f"{99_999 - ingest.REPORT_MAX_LINES:,} more files failed (not listed)"


def test_a_full_disk_fails_the_import_cleanly_and_leaves_no_partial_file(tmp_path, settings, monkeypatch):
    src = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(4)})
    real_write, calls = os.write, []

    def write(fd, data):  # the disk fills up during the second image: half a file is written, then ENOSPC
        calls.append(fd)
        if len(calls) == 4:
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(ingest.os, "write", write)
    job = run_import(source=src)
    monkeypatch.undo()
    assert job.status == "failed" and job.finished_at is not None
    assert "disk holding the media folder is full (No space left on device)" in job.error
    assert Image.objects.count() == 1  # the image stored before the disk filled up is kept, whole
    files = _media_files(settings)
    assert files == _referenced() and not any(".part" in f for f in files)
    # a retry (the disk freed) finishes the import without storing anything twice
    from retrieval.imports import services

    services.import_job_retry(job=job, enqueue=False)
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and Image.objects.count() == 4 and _media_files(settings) == _referenced()


def test_an_image_committed_by_a_concurrent_import_keeps_its_files(tmp_path, settings, monkeypatch):
    """Two imports of one file: the second passed the duplicate check before the first committed. Its clean-up
    used to delete the content-addressed files the first one's row references."""
    data = png_bytes(7)
    first = run_import(source=write_files(tmp_path / "a", {"a.png": data}))
    assert first.n_imported == 1
    stored = _referenced()
    real = ingest._find_duplicate
    calls = []

    def racing(dataset, digest, sop):  # the check before decoding misses the image committed meanwhile
        calls.append(digest)
        return None if len(calls) == 1 else real(dataset, digest, sop)

    monkeypatch.setattr(ingest, "_find_duplicate", racing)
    second = run_import(source=write_files(tmp_path / "b", {"b.png": data}))
    assert second.status == "succeeded" and second.n_imported == 0
    a_png = stored_name(first.dataset, "a.png")  # files are known by their keyed pseudonyms (issue 12, finding 2)
    assert report_for(second, "b.png")[0]["message"] == f"duplicate of {a_png} (stored by a concurrent import)"
    assert _media_files(settings) == stored and all((settings.MEDIA_ROOT / p).is_file() for p in stored)


@pytest.mark.db_engine(
    "two processes commit images into one dataset at once: PostgreSQL serialises them with the dataset's row "
    "lock (select_for_update), SQLite with its IMMEDIATE write transactions"
)
@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_folder_at_once_store_each_file_once(tmp_path, settings):
    from retrieval.imports import services

    services.dataset_create(name="both")
    src = write_files(tmp_path / "s", {f"{i:02d}.png": png_bytes(100 + i) for i in range(24)})
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "UPLOAD_ROOT": str(settings.UPLOAD_ROOT),
        "DEBUG": "true",
    }
    argv = [sys.executable, "manage.py", "import_images", "both", str(src), "--sync"]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all("Traceback" not in out for out in outputs), outputs
    dataset = Dataset.objects.get(name="both")
    assert sorted(Image.objects.values_list("source_name", flat=True)) == sorted(
        stored_name(dataset, f"{i:02d}.png") for i in range(24)
    )
    assert sum(job.n_imported for job in ImportJob.objects.all()) >= 24  # a resumed duplicate counts as its own
    assert _media_files(settings) == _referenced()
    assert all((settings.MEDIA_ROOT / p).is_file() for p in _referenced())


def test_the_import_report_page_is_paginated(client, coordinator, tmp_path):
    src = write_files(tmp_path / "s", {f"bad_{i:03d}.png": b"" for i in range(450)} | {"ok.png": png_bytes(1)})
    job = run_import(source=src)
    assert job.n_failed == 450
    client_for(client, coordinator)
    first = client.get(job.get_absolute_url()).content.decode()
    name = {i: stored_name(job.dataset, f"bad_{i:03d}.png") for i in (0, 250, 449)}
    assert name[0] in first and name[250] not in first and "Page 1 of 3" in first
    third = client.get(job.get_absolute_url() + "?page=3").content.decode()
    assert name[449] in third and name[0] not in third


def test_a_single_uploaded_file_is_reported_under_its_own_name(client, coordinator, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from retrieval.imports import services

    ds = services.dataset_create(name="single")
    client_for(client, coordinator)
    upload = SimpleUploadedFile("Chest film.png", b"not really a PNG")
    with pytest.MonkeyPatch.context() as mp:  # run the queued task inline
        mp.setattr(services, "_import_enqueue", lambda job: None)
        client.post(f"/datasets/{ds.pk}/import/", {"archive": upload, "label_format": "generic"})
    job = ImportJob.objects.get()
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "none of its 1 files" in job.error
    # Under its own name's pseudonym (not the server's random upload name), then the source's line.
    assert [r["file"] for r in job.report] == [stored_name(ds, "Chest film.png"), ingest.SOURCE]
    assert not any(settings.UPLOAD_ROOT.rglob("*.png"))  # removed, and its random folder with it
    assert not any(p.is_dir() for p in (settings.UPLOAD_ROOT / "archives").iterdir())


def test_a_dicom_nested_400_deep_is_refused_before_anything_recurses_into_it():
    """47 KB nested 400 deep: pydicom's writer, in de-identification, used to take the worker to 20 GB."""
    from retrieval.imports.imaging.decode import decode_image
    from retrieval.imports.imaging.deid import deidentify_dicom
    from retrieval.imports.imaging.dicom import MAX_SEQUENCE_DEPTH, check_structure, read_dataset, read_dicom_header
    from retrieval.imports.imaging.errors import ImageDecodeError
    from tests.imports_corpus.build import deep_dicom

    deep = deep_dicom(400)
    for read in (read_dicom_header, decode_image, lambda data: deidentify_dicom(data, pseudo_id="P1")):
        with pytest.raises(ImageDecodeError, match=f"nested more than {MAX_SEQUENCE_DEPTH} deep"):
            read(deep)
    assert deidentify_dicom(deep_dicom(MAX_SEQUENCE_DEPTH - 1), pseudo_id="P1")  # the bound itself is written
    ds = read_dataset(deep_dicom(3), stop_before_pixels=True)
    with pytest.raises(ImageDecodeError, match="more than 50 data elements"):
        check_structure(ds, max_elements=50)


def test_the_archive_budget_is_counted_again_while_members_are_read(tmp_path):
    """Declared sizes are checked before any member is read; what is inflated is counted too (a reader that
    trusted the headers alone would read on)."""
    from retrieval.imports.sources import SourceError, _Archive

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * 6_000)
        zf.writestr("b.png", b"\0" * 6_000)
    archive = _Archive(path, max_bytes=10_000, max_total_bytes=10_000)
    try:
        first, second = archive.zip.infolist()
        assert len(archive.reader(0, first)()) == 6_000
        assert len(archive.reader(0, first)()) == 6_000  # the same member read again is not counted twice
        with pytest.raises(SourceError, match="more than 10,000 bytes uncompressed in total"):
            archive.reader(1, second)()
    finally:
        archive.close()
