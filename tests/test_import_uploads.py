"""A failed import never leaves an upload (with every original identifier) on disk longer than a retry needs.

Issue 12, High 3. Uploads are removed when the import succeeded, at once when it failed on the upload
itself (a retry would fail the same way), and otherwise after IMPORT_UPLOAD_KEEP_HOURS or with the job.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.errors import ApplicationError
from core.tasks import JobFailed
from retrieval.imports import ingest, services
from retrieval.models import ImportJob
from retrieval.tasks import import_run
from tests.factories import csv_bytes, png_bytes, write_files, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def upload_root(settings, tmp_path):
    settings.UPLOAD_ROOT = (tmp_path / "uploads").resolve()
    return settings.UPLOAD_ROOT


def _upload(root: Path, kind: str, name: str, content: bytes) -> Path:
    (root / kind).mkdir(parents=True, exist_ok=True)
    path = root / kind / name
    path.write_bytes(content)
    return path


def _uploaded_job(upload_root, *, archive: bytes, labels: bytes | None = None) -> ImportJob:
    dataset = services.dataset_create(name="d")
    source = _upload(upload_root, "archives", "a.zip", archive)
    table = _upload(upload_root, "labels", "t.csv", labels) if labels is not None else ""
    return services.import_job_create(
        dataset=dataset, source_path=source, labels_path=table, remove_sources=True, enqueue=False
    )


def _fault(*args, **kwargs):
    raise RuntimeError("injected fault")


def test_an_upload_the_import_refuses_is_removed_at_once(upload_root):
    job = _uploaded_job(upload_root, archive=b"PatientName=Doe^John, not a zip")
    source = Path(job.source_path)
    with pytest.raises(JobFailed):
        import_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "not a readable zip archive" in job.error
    assert not source.exists()
    assert job.source_path == job.labels_path == ""  # issue 12, finding 2: no path outlives its upload
    with pytest.raises(ApplicationError, match="upload them again"):
        services.import_job_retry(job=job, enqueue=False)


def test_an_unusable_label_table_takes_the_archive_with_it(upload_root):
    archive = zip_bytes({"Doe_John_MRN1234.png": png_bytes(1)})
    job = _uploaded_job(upload_root, archive=archive, labels=b"")
    source, table = Path(job.source_path), Path(job.labels_path)
    with pytest.raises(JobFailed):
        import_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "empty table" in job.error
    assert not source.exists() and not table.exists()
    assert job.source_path == job.labels_path == ""


def test_an_unexpected_failure_keeps_the_upload_for_a_while_then_removes_it(upload_root, monkeypatch):
    archive = zip_bytes({f"{i}.png": png_bytes(i) for i in range(2)})
    table = csv_bytes([["file", "finding"], ["0.png", "a"], ["1.png", "b"]])
    job = _uploaded_job(upload_root, archive=archive, labels=table)
    monkeypatch.setattr(ingest, "_plan_units", _fault)
    with pytest.raises(JobFailed):
        import_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and Path(job.source_path).exists()  # kept for the retry
    call_command("import_uploads_purge")
    assert Path(job.source_path).exists()  # still inside the retry window

    source, table = Path(job.source_path), Path(job.labels_path)
    ImportJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    call_command("import_uploads_purge")
    assert not source.exists() and not table.exists()
    job.refresh_from_db()
    assert job.source_path == job.labels_path == ""  # forgotten with the upload
    with pytest.raises(ApplicationError, match="upload them again"):
        services.import_job_retry(job=job, enqueue=False)


def test_every_import_removes_expired_uploads(upload_root, monkeypatch):
    job = _uploaded_job(upload_root, archive=zip_bytes({"0.png": png_bytes(0)}))
    monkeypatch.setattr(ingest, "_plan_units", _fault)
    with pytest.raises(JobFailed):
        import_run(job_id=job.pk)
    monkeypatch.undo()
    ImportJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    other = services.import_job_create(
        dataset=job.dataset, labels_path=_upload(upload_root, "labels", "u.csv", b"file,x\n"), enqueue=False
    )
    import_run(job_id=other.pk)
    assert not Path(job.source_path).exists()


def test_a_deleted_import_takes_its_kept_upload_with_it(upload_root, monkeypatch):
    job = _uploaded_job(upload_root, archive=zip_bytes({"0.png": png_bytes(0)}))
    monkeypatch.setattr(ingest, "_plan_units", _fault)
    with pytest.raises(JobFailed):
        import_run(job_id=job.pk)
    assert Path(job.source_path).exists()
    job.dataset.delete()  # cascades to the import
    assert not Path(job.source_path).exists()


def test_a_server_folder_is_never_removed(tmp_path):
    source = write_files(tmp_path / "server", {"a.png": png_bytes(1)})  # an empty folder fails the import
    job = services.import_job_create(
        dataset=services.dataset_create(name="d"), source_path=source, remove_sources=True, enqueue=False
    )
    import_run(job_id=job.pk)
    assert source.exists() and (source / "a.png").exists()
