"""No job stays running: every job kind records an unforeseen failure with its message, its task reports the
failure honestly (JobFailed, not "succeeded"), and the job can be retried to success.

One test per job kind — import, model run, re-evaluation, upload search, report — each with a fault
injected where the kind's real work happens (a RuntimeError the code does not expect).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import Conflict
from core.tasks import JobFailed
from reports import build
from reports.models import ReportRun
from reports.options import ReportOptions
from reports.tasks import report_bootstrap, report_run_start
from retrieval.imports import ingest, services
from retrieval.models import Image, ImportJob, ModelRun
from retrieval.tasks import evaluation_execute, import_run, run_execute, search_execute
from tests.factories import png_bytes, write_files
from tests.reports.conftest import generate_study
from tests.runs.conftest import SMALL

pytestmark = pytest.mark.django_db

UNEXPECTED = "Unexpected error: RuntimeError: injected fault"


def _fault(*args, **kwargs):
    raise RuntimeError("injected fault")


def test_import_failure_is_recorded_and_retried(tmp_path, monkeypatch, caplog):
    dataset = services.dataset_create(name="d")
    source = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(4)})
    job = services.import_job_create(dataset=dataset, source_path=source, enqueue=False)
    monkeypatch.setattr(ingest, "_plan_units", _fault)
    with caplog.at_level(logging.ERROR), pytest.raises(JobFailed, match=f"ImportJob {job.pk} failed: {UNEXPECTED}"):
        import_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", UNEXPECTED) and job.finished_at is not None
    assert "Traceback" in caplog.text  # the worker's log keeps the traceback of an unforeseen error
    assert Path(source).exists()  # the sources stay for the retry

    monkeypatch.undo()
    services.import_job_retry(job=job, enqueue=False)
    assert ImportJob.objects.get(pk=job.pk).status == "pending"
    import_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.error, job.n_imported, job.attempts) == ("succeeded", "", 4, 2)
    assert Image.objects.filter(dataset=dataset).count() == 4
    with pytest.raises(Conflict):
        services.import_job_retry(job=job, enqueue=False)  # only failed imports


@pytest.mark.ml
def test_run_failure_is_recorded_and_resumed(phantom_dataset, monkeypatch):
    from retrieval.runs import stages as pipeline
    from retrieval.runs.services import run_create, run_resume

    run = run_create(dataset=phantom_dataset, name="r", method="timm", config=SMALL, enqueue=False)
    monkeypatch.setattr(pipeline, "_index", _fault)
    with pytest.raises(JobFailed, match=UNEXPECTED):
        run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", UNEXPECTED)
    assert "embed" in run.timings  # the stages before the fault are kept

    monkeypatch.undo()
    run_resume(run=run)
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.error, run.n_embedded) == ("succeeded", "", 60)


@pytest.mark.ml
def test_evaluation_failure_is_recorded_and_retried(phantom_dataset, monkeypatch):
    from retrieval.runs import evaluation
    from retrieval.runs.services import evaluation_request, evaluation_retry, run_create
    from retrieval.runs.splits import split_create

    split = split_create(dataset=phantom_dataset)
    run = run_create(dataset=phantom_dataset, name="r", method="timm", config=SMALL, split=split, enqueue=False)
    run_execute(run_id=run.pk)
    shown = ModelRun.objects.get(pk=run.pk).metrics["retrieval"]
    ev = evaluation_request(run=ModelRun.objects.get(pk=run.pk), options={"ks": [1, 2]}, enqueue=False)
    monkeypatch.setattr(evaluation, "evaluate_run", _fault)
    with pytest.raises(JobFailed, match=UNEXPECTED):
        evaluation_execute(evaluation_id=ev.pk)
    ev.refresh_from_db()
    assert (ev.status, ev.error) == ("failed", UNEXPECTED)
    run.refresh_from_db()  # the run itself is fine: finished, its shown metrics untouched
    assert (run.status, run.error, run.metrics["retrieval"]) == ("succeeded", "", shown)

    monkeypatch.undo()
    evaluation_retry(evaluation=ev, enqueue=False)
    evaluation_execute(evaluation_id=ev.pk)
    ev.refresh_from_db()
    run.refresh_from_db()
    assert (ev.status, ev.error) == ("succeeded", "")
    assert "precision@2" in run.metrics["retrieval"] and run.metrics["retrieval"] == ev.result


@pytest.mark.ml
def test_search_failure_is_recorded_and_retried_with_the_kept_upload(phantom_dataset, monkeypatch, tmp_path):
    from retrieval.runs import search, search_job
    from retrieval.runs.services import run_create

    run = run_create(dataset=phantom_dataset, name="r", method="timm", config=SMALL, enqueue=False)
    run_execute(run_id=run.pk)
    upload = tmp_path / "query.png"
    upload.write_bytes(png_bytes(3, size=80))
    req = search.search_request_create(run=ModelRun.objects.get(pk=run.pk), upload_path=upload, k=3, enqueue=False)
    monkeypatch.setattr(search_job, "embed_pixels", _fault)
    with pytest.raises(JobFailed, match=UNEXPECTED):
        search_execute(search_id=req.pk)
    req.refresh_from_db()
    assert (req.status, req.error) == ("failed", UNEXPECTED) and upload.exists()  # kept: the search can be retried

    monkeypatch.undo()
    search.search_request_retry(req=req, enqueue=False)
    search_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "succeeded" and len(req.results) == 3 and not upload.exists()

    # An image the worker cannot read is an expected failure: its message, and the upload is removed.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    req = search.search_request_create(run=ModelRun.objects.get(pk=run.pk), upload_path=bad, k=3, enqueue=False)
    with pytest.raises(JobFailed):
        search_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "failed" and not req.error.startswith("Unexpected") and not bad.exists()
    with pytest.raises(Conflict, match="upload it again"):
        search.search_request_retry(req=req, enqueue=False)


def test_report_failure_is_recorded_and_retried(tmp_path, monkeypatch):
    study = generate_study(
        mode="choose_k", n_cases=6, n_readers=3, q=0.6, status="open", run_dir=tmp_path / "runs"
    ).study
    options = ReportOptions(n_resamples=50, seed=1)
    run, _ = report_run_start(study=study, options=options)
    monkeypatch.setattr(build, "report_for_study", _fault)
    with pytest.raises(JobFailed, match=UNEXPECTED):
        report_bootstrap(report_run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", UNEXPECTED)

    monkeypatch.undo()
    again, queued = report_run_start(study=study, options=options)  # the same request retries it
    assert queued and again.pk == run.pk and again.status == "pending"
    report_bootstrap(report_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result and ReportRun.objects.count() == 1


def test_a_task_whose_job_failed_is_logged_as_failed_without_a_traceback(tmp_path, caplog):
    """What the worker prints: Celery's 'raised expected' line at INFO with the job's message."""
    dataset = services.dataset_create(name="d")
    job = services.import_job_create(
        dataset=dataset, source_path=write_files(tmp_path / "s", {"x.png": b"not"}), enqueue=False
    )
    ImportJob.objects.filter(pk=job.pk).update(source_path=str(tmp_path / "gone"))  # vanished from the server
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        result = import_run.apply(kwargs={"job_id": job.pk}, throw=False)
    assert result.failed() and isinstance(result.result, JobFailed)
    job.refresh_from_db()
    assert job.status == "failed" and job.error
    line = next(r for r in caplog.records if "raised expected" in r.getMessage())
    assert line.levelno == logging.INFO and line.exc_info is None and f"ImportJob {job.pk} failed" in line.getMessage()


@pytest.mark.parametrize("stop", ["memory", "time"])
def test_an_error_raised_while_a_limit_stopped_the_task_fails_the_job_with_the_limits_message(tmp_path, stop):
    """The memory and time limits stop a task by a signal, wherever it is — inside a PostgreSQL query, whose
    clean-up then raises its own error ("another command is already in progress"). The job fails with the
    limit's message, not as an unexpected error of the clean-up."""
    from celery.exceptions import SoftTimeLimitExceeded
    from django.db import OperationalError

    from core.jobs import job_run
    from core.tasks import MemoryLimitExceeded, memory_limit_message

    limit = MemoryLimitExceeded(memory_limit_message(1000)) if stop == "memory" else SoftTimeLimitExceeded()
    job = services.import_job_create(
        dataset=services.dataset_create(name="d"),
        source_path=write_files(tmp_path / "s", {"a.png": png_bytes(1)}),
        enqueue=False,
    )

    def body(_job):
        try:
            raise limit
        except BaseException:
            raise OperationalError("sending query failed: another command is already in progress") from None

    job_run(ImportJob, job.pk, body)
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith(
        "Stopped: the job needed more than 1,000 MB" if stop == "memory" else "Stopped: the job ran longer"
    )
