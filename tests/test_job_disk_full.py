"""Issue 15, point 10, with SQLite's database inside the full data folder: the failing import cannot write its own
failure either. The worker logs it, the job does not end *succeeded* nor raise out of the task, and the failure is
written as soon as the database takes writes again (no job stays running for ever)."""

from __future__ import annotations

import errno
import logging
import os

import pytest
from django.db.backends import utils as db_utils
from django.db.utils import OperationalError

from core import jobs
from retrieval.imports import ingest, services
from retrieval.models import Image, ImportJob
from tests.conftest import wait_until
from tests.factories import png_bytes, write_files

pytestmark = pytest.mark.django_db(transaction=True)  # the retry thread has its own connection


@pytest.fixture
def full_disk(monkeypatch):
    """The disk fills up while the second image is written: the media files' writes fail with ENOSPC and, from then
    on, every database write fails as SQLite's does on a full disk ("database or disk is full"). `full[0] = False`
    frees the space."""
    full = [False]
    real_write, real_execute = os.write, db_utils.CursorWrapper._execute
    writes = []

    def write(fd, data):
        writes.append(fd)
        if len(writes) == 4:
            full[0] = True
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def execute(self, sql, params, *args):
        if full[0] and sql.lstrip()[:6].upper() in ("UPDATE", "INSERT", "DELETE"):
            raise OperationalError("database or disk is full")
        return real_execute(self, sql, params, *args)

    monkeypatch.setattr(ingest.os, "write", write)
    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    monkeypatch.setattr(jobs, "FAILURE_RECORD_RETRY_SECONDS", 0.2)
    return full


def test_a_failure_the_full_database_refuses_is_written_once_space_is_freed(tmp_path, full_disk, caplog):
    dataset = services.dataset_create(name="full")
    src = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(4)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)
    with caplog.at_level(logging.ERROR, logger="core.jobs"):
        ingest.import_job_run(job_id=job.pk)  # no exception out of the task's body
    (logged,) = [r.getMessage() for r in caplog.records if "refused to record it" in r.getMessage()]
    assert "database or disk is full" in logged and "tries again every" in logged
    job.refresh_from_db()
    assert job.status == "running" and jobs._unrecorded  # not succeeded, not lost: waiting to be written
    assert ImportJob.objects.get(pk=job.pk).status == "running"  # the thread keeps trying while the disk is full
    full_disk[0] = False  # space freed
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).status == "failed", timeout=10)
    job.refresh_from_db()
    assert job.error.startswith("Stopped: the database could not be written (database or disk is full)"), job.error
    assert "Free space, then retry" in job.error and job.finished_at is not None
    assert not jobs._unrecorded and Image.objects.filter(dataset=dataset).count() == 1
    # Space freed, a retry finishes the import.
    services.import_job_retry(job=job, enqueue=False)
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and Image.objects.filter(dataset=dataset).count() == 4


def test_a_waiting_failure_is_not_written_over_a_job_another_worker_took_over(full_disk, tmp_path):
    """Only a job still running under the claim of the process that failed it is failed by the late write."""
    dataset = services.dataset_create(name="taken")
    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)
    ImportJob.objects.filter(pk=job.pk).update(status="running", claimed_by="other-host 1 1")
    job.refresh_from_db()
    job.claimed_by = "this-host 2 2"
    jobs._unrecorded.clear()
    full_disk[0] = True
    jobs._record_failure(job, "Stopped: something")
    full_disk[0] = False
    assert jobs.failures_unrecorded_flush() == 0
    assert ImportJob.objects.get(pk=job.pk).status == "running"
