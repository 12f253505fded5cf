"""An import in chunks (core.fanout; retrieval.imports.ingest) gives what the import in one task gives.

The chunks run here one after the other, in reverse order (a later chunk finishing first, as on several workers),
by the task bodies the workers call; tests/test_import_workers.py runs them on real worker processes.
"""

from __future__ import annotations

import pytest

from core import fanout
from core.jobs import JobStatus
from retrieval.imports import ingest, services
from retrieval.models import Image, ImportChunk, ImportJob
from tests.factories import csv_bytes, dicom_with, jpeg_bytes, png_bytes, write_files, zip_bytes

pytestmark = pytest.mark.django_db


def collection() -> dict[str, bytes]:
    files = {f"img/{i:02d}.png": png_bytes(i) for i in range(9)}
    files["img/05-copy.png"] = png_bytes(1)  # the content of an earlier file, in a later chunk
    files["img/06-copy.png"] = png_bytes(8)  # … and of a later one (the first in the plan is stored)
    files["broken.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    files["notes.txt"] = b"not an image"
    files["x/a.jpg"] = jpeg_bytes(3)
    files["ct/1.dcm"] = dicom_with(SOPInstanceUID="1.2.3.1", SeriesInstanceUID="1.2.3", InstanceNumber=1)
    files["ct/2.dcm"] = dicom_with(SOPInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3", InstanceNumber=2)
    files["ct/2-again.dcm"] = dicom_with(SOPInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3", InstanceNumber=2)
    return files


def labels_table(tmp_path):
    rows = [["filename", "finding"]] + [[f"img/{i:02d}.png", f"f{i}"] for i in range(0, 9, 2)] + [["gone.png", "x"]]
    path = tmp_path / "labels.csv"
    path.write_bytes(csv_bytes(rows))
    return path


def run_chunked(job: ImportJob, monkeypatch) -> ImportJob:
    """The import task, its chunks' tasks (latest first) and its continuation, as the workers would run them."""
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))
    ingest.import_job_run(job_id=job.pk, chunked=True)
    while sent:
        chunks = [pk for model, pk in sent if model is ImportChunk]
        parents = [pk for model, pk in sent if model is ImportJob]
        sent.clear()
        for pk in reversed(chunks):
            ingest.import_chunk_run(part_id=pk)
        for pk in parents:
            ingest.import_job_run(job_id=pk, chunked=True)
    job.refresh_from_db()
    return job


def outcome(job: ImportJob) -> dict:
    images = Image.objects.filter(import_job=job)
    return {
        "status": job.status,
        "counts": (job.n_imported, job.n_skipped, job.n_failed, job.n_labels),
        "report": job.report,
        "images": sorted(
            (
                i.source_name,
                i.content_hash,
                i.slices_in_series,
                tuple(sorted(i.labels.values_list("name", "value_text"))),
            )
            for i in images
        ),
        "progress": (job.progress_done, job.progress_total),
    }


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "zip"])
def test_an_import_in_chunks_gives_what_one_task_gives(tmp_path, settings, monkeypatch, archive):
    files = collection()
    if archive:
        source = tmp_path / "src.zip"
        source.write_bytes(zip_bytes(files))
    else:
        source = write_files(tmp_path / "src", files)
    labels = labels_table(tmp_path)
    one = services.dataset_create(name="one task")
    many = services.dataset_create(name="chunks")
    many.pseudonym_key = one.pseudonym_key  # the same pseudonyms: the reports compare line by line
    many.save()
    single = services.import_job_create(dataset=one, source_path=source, labels_path=labels, enqueue=False)
    ingest.import_job_run(job_id=single.pk)
    single.refresh_from_db()

    settings.IMPORT_CHUNK_SIZE = 3
    chunked = services.import_job_create(dataset=many, source_path=source, labels_path=labels, enqueue=False)
    chunked = run_chunked(chunked, monkeypatch)
    assert ImportChunk.objects.filter(parent=chunked).count() == 5  # 13 units in chunks of 3
    assert set(ImportChunk.objects.filter(parent=chunked).values_list("status", flat=True)) == {"succeeded"}
    expected = outcome(single)
    assert expected["status"] == "succeeded" and expected["counts"][0] == 11
    assert any("duplicate of" in line["message"] for line in expected["report"])
    assert outcome(chunked) == expected
    assert not list((settings.UPLOAD_ROOT / "plans").glob("*")), "the plan is removed once the import finished"


def test_a_failed_chunk_fails_the_import_with_its_message_and_a_retry_plans_afresh(tmp_path, settings, monkeypatch):
    settings.IMPORT_CHUNK_SIZE = 2
    source = write_files(tmp_path / "src", {f"{i}.png": png_bytes(i) for i in range(5)})
    job = services.import_job_create(dataset=services.dataset_create(name="d"), source_path=source, enqueue=False)
    real = ingest._import_unit
    calls = []

    def failing(run, unit):
        calls.append(unit)
        if run.part is not None and run.part.index == 1:
            raise ingest.StorageFull(28, "the disk holding the media folder is full")
        return real(run, unit)

    monkeypatch.setattr(ingest, "_import_unit", failing)
    job = run_chunked(job, monkeypatch)
    assert (job.status, job.error) == ("failed", "[Errno 28] the disk holding the media folder is full")
    statuses = dict(ImportChunk.objects.filter(parent=job).values_list("index", "status"))
    assert statuses[1] == "failed"
    monkeypatch.setattr(ingest, "_import_unit", real)
    services.import_job_retry(job=job, enqueue=False)
    job = run_chunked(job, monkeypatch)
    assert (job.status, job.n_imported, job.n_skipped) == ("succeeded", 5, 0)
    assert Image.objects.filter(import_job=job).count() == 5


def test_the_continuation_is_queued_once_and_a_lost_one_is_found_by_the_requeue(tmp_path, settings, monkeypatch):
    from core.tasks import jobs_requeue

    settings.IMPORT_CHUNK_SIZE = 2
    source = write_files(tmp_path / "src", {f"{i}.png": png_bytes(i) for i in range(4)})
    job = services.import_job_create(dataset=services.dataset_create(name="d"), source_path=source, enqueue=False)
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))
    ingest.import_job_run(job_id=job.pk, chunked=True)
    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.progress_total) == ("running", "parts", 4)
    job.heartbeat_at = job.heartbeat_at.replace(year=2000)
    assert not job.worker_lost  # its chunks may wait behind other work: the page does not call it lost
    chunks = [pk for model, pk in sent if model is ImportChunk]
    ingest.import_chunk_run(part_id=chunks[0])
    after_one = ImportJob.objects.get(pk=job.pk)
    assert (after_one.progress_done, after_one.n_imported) == (2, 2)  # one bar, one count: the sums of the chunks'
    ingest.import_chunk_run(part_id=chunks[1])
    ingest.import_chunk_run(part_id=chunks[1])  # delivered twice: nothing done twice, the job queued once
    assert [model for model, pk in sent].count(ImportJob) == 1
    assert fanout.parts_settle(ImportChunk, job.pk) is False
    job.refresh_from_db()
    assert (job.status, job.enqueued_at) == ("pending", None)  # its message lost: the outbox sends it
    settings.JOB_REQUEUE_GRACE_SECONDS = 0
    sent_again = []
    from retrieval import tasks

    monkeypatch.setattr(tasks.import_run, "apply_async", lambda kwargs, **kw: sent_again.append(kwargs))
    ImportJob.objects.filter(pk=job.pk).update(created_at=job.created_at.replace(year=2000))
    jobs_requeue()
    assert sent_again == [{"job_id": job.pk}]
    started = job.started_at
    ingest.import_job_run(job_id=job.pk, chunked=True)
    job.refresh_from_db()
    assert (job.status, job.n_imported, job.progress_done) == (JobStatus.SUCCEEDED, 4, 4)
    assert job.started_at == started  # the import's start, not its finishing step's


def test_a_file_replaced_by_a_link_after_planning_is_refused_by_its_chunk(tmp_path, settings, monkeypatch):
    settings.IMPORT_CHUNK_SIZE = 2
    source = write_files(tmp_path / "src", {f"{i}.png": png_bytes(i) for i in range(4)})
    outside = write_files(tmp_path / "outside", {"secret.png": png_bytes(99)})
    job = services.import_job_create(dataset=services.dataset_create(name="d"), source_path=source, enqueue=False)
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))
    ingest.import_job_run(job_id=job.pk, chunked=True)
    (source / "3.png").unlink()
    (source / "3.png").symlink_to(outside / "secret.png")
    for _model, pk in list(sent):
        ingest.import_chunk_run(part_id=pk)
    ingest.import_job_run(job_id=job.pk, chunked=True)
    job.refresh_from_db()
    assert (job.status, job.n_imported, job.n_failed) == ("succeeded", 3, 1)
    assert [r["message"] for r in job.report if r["status"] == "failed"] == [
        "could not be read: link pointing outside the imported folder refused"
    ]


def test_a_chunk_that_cannot_read_the_source_fails_the_import_without_naming_it(tmp_path, settings, monkeypatch):
    settings.IMPORT_CHUNK_SIZE = 2
    archive = tmp_path / "Doe_John_MRN123.zip"
    archive.write_bytes(zip_bytes({f"{i}.png": png_bytes(i) for i in range(4)}))
    job = services.import_job_create(dataset=services.dataset_create(name="d"), source_path=archive, enqueue=False)
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))
    ingest.import_job_run(job_id=job.pk, chunked=True)
    archive.write_bytes(b"no longer a zip")
    ingest.import_chunk_run(part_id=sent[0][1])
    job.refresh_from_db()
    assert job.status == "failed" and "not a readable zip archive" in job.error
    assert "Doe_John" not in job.error and "MRN123" not in job.error
    assert set(ImportChunk.objects.filter(parent=job).values_list("status", flat=True)) == {"failed", "cancelled"}
