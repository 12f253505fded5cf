"""Every job kind through the one runner (core.jobs.job_run), by its own Celery task, exactly as a worker calls it.

For each kind — import, model run, re-evaluation, upload search, report, weights fetch — and each way a job can
go: success; an expected failure (ApplicationError: its own message, no traceback); an unexpected failure (the
message names the type, the traceback goes to the log); a second delivery of a finished and of a live job
(nothing done twice); and a job whose worker was lost (running, heartbeat older than JOB_STALE_SECONDS),
which a redelivered message takes over. A failed job can be retried to success with the kind's own service.
Faults are injected where each kind's real work happens.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from core.jobs import UNEXPECTED, TrackedJob
from core.tasks import JobFailed
from reports import build
from reports.models import ReportRun
from reports.options import ReportOptions
from reports.tasks import report_bootstrap, report_run_start
from retrieval.imports import ingest, services
from retrieval.models import Evaluation, ImportJob, ModelRun, SearchRequest
from retrieval.tasks import evaluation_execute, import_run, run_execute, search_execute
from tests.factories import png_bytes, write_files
from tests.reports.conftest import generate_study
from tests.runs.conftest import SMALL

pytestmark = pytest.mark.django_db


@dataclass
class Kind:
    model: type[TrackedJob]
    new: Callable[[], TrackedJob]  # a fresh pending job of this kind (not queued)
    execute: Callable[[int], object]  # the kind's Celery task, called as the worker calls it
    fault: tuple[object, str]  # (module, attribute) where the kind's work happens
    retry: Callable[[TrackedJob], TrackedJob]  # the kind's way to queue a failed job again
    done: Callable[[TrackedJob], bool]  # what success left behind


def _import_kind(tmp_path, phantom_dataset) -> Kind:
    dataset = services.dataset_create(name="imports")
    counter = itertools.count()

    def new():
        n = next(counter)  # new images each time: an image already in the dataset would be skipped
        source = write_files(tmp_path / f"s{n}", {f"{i}.png": png_bytes(10 * n + i) for i in range(3)})
        return services.import_job_create(dataset=dataset, source_path=source, enqueue=False)

    return Kind(
        ImportJob,
        new,
        lambda pk: import_run(job_id=pk),
        (ingest, "_plan_units"),
        lambda job: services.import_job_retry(job=job, enqueue=False),
        lambda job: job.n_imported == 3,
    )


def _run_kind(tmp_path, phantom_dataset) -> Kind:
    from retrieval.runs import stages
    from retrieval.runs.services import run_create, run_resume

    counter = itertools.count()

    def new():
        return run_create(dataset=phantom_dataset, name=f"r{next(counter)}", method="timm", config=SMALL, enqueue=False)

    def retry(run):
        return run_resume(run=run)

    return Kind(
        ModelRun,
        new,
        lambda pk: run_execute(run_id=pk),
        (stages, "_index"),
        retry,
        lambda run: run.n_embedded == 60 and run.stage == "done",
    )


def _finished_run(phantom_dataset) -> ModelRun:
    from retrieval.runs.services import run_create
    from retrieval.runs.splits import split_create

    split = split_create(dataset=phantom_dataset)
    run = run_create(dataset=phantom_dataset, name="finished", method="timm", config=SMALL, split=split, enqueue=False)
    run_execute(run_id=run.pk)
    return ModelRun.objects.get(pk=run.pk)


def _evaluation_kind(tmp_path, phantom_dataset) -> Kind:
    from retrieval.runs import evaluation
    from retrieval.runs.services import evaluation_request, evaluation_retry

    run = _finished_run(phantom_dataset)

    def new():
        Evaluation.objects.filter(run=run, status__in=["pending", "running"]).update(status="cancelled")
        return evaluation_request(run=run, options={"ks": [1, 2]}, enqueue=False)

    def done(ev):
        shown = ModelRun.objects.get(pk=run.pk)
        return (
            "precision@2" in ev.result
            and shown.metrics["retrieval"] == ev.result
            and shown.status == "succeeded"
            and shown.error == ""
        )

    return Kind(
        Evaluation,
        new,
        lambda pk: evaluation_execute(evaluation_id=pk),
        (evaluation, "evaluate_run"),
        lambda ev: evaluation_retry(evaluation=ev, enqueue=False),
        done,
    )


def _search_kind(tmp_path, phantom_dataset) -> Kind:
    from retrieval.runs import search, search_job

    run = _finished_run(phantom_dataset)
    counter = itertools.count()

    def new():
        upload = tmp_path / f"query{next(counter)}.png"
        upload.write_bytes(png_bytes(3, size=80))
        return search.search_request_create(run=run, upload_path=upload, k=3, enqueue=False)

    return Kind(
        SearchRequest,
        new,
        lambda pk: search_execute(search_id=pk),
        (search_job, "embed_pixels"),
        lambda req: search.search_request_retry(req=req, enqueue=False),
        lambda req: len(req.results) == 3 and not Path(req.upload_path).exists(),
    )


def _report_kind(tmp_path, phantom_dataset) -> Kind:
    study = generate_study(
        mode="choose_k", n_cases=6, n_readers=3, q=0.6, status="open", run_dir=tmp_path / "runs"
    ).study
    seeds = itertools.count(1)
    last: dict[int, ReportOptions] = {}

    def new():
        options = ReportOptions(n_resamples=50, seed=next(seeds))
        run, queued = report_run_start(study=study, options=options)
        assert queued
        last[run.pk] = options
        return run

    def retry(run):  # asking for the same report again retries it
        again, queued = report_run_start(study=study, options=last[run.pk])
        assert queued and again.pk == run.pk
        return again

    return Kind(
        ReportRun,
        new,
        lambda pk: report_bootstrap(report_run_id=pk),
        (build, "report_for_study"),
        retry,
        lambda run: bool(run.result),
    )


_ENV = pytest.MonkeyPatch()  # what a kind sets up in the environment; the test's own monkeypatch is undone midway


@pytest.fixture(autouse=True)
def _env_undone():
    yield
    _ENV.undo()


def _weights_kind(tmp_path, phantom_dataset) -> Kind:
    """A weights fetch whose files are already in the cache (the download itself: tests/ml/test_fetch_weights.py)."""
    from retrieval.models import WeightsFetch
    from retrieval.runs import weights_job
    from retrieval.runs.fetching import weights_fetch_create, weights_fetch_retry
    from retrieval.tasks import weights_fetch

    snapshot = tmp_path / "hf" / "hub" / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    (snapshot / "model.safetensors").write_bytes(b"weights")
    _ENV.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # undone after the test (_env_undone)

    return Kind(
        WeightsFetch,
        lambda: weights_fetch_create(model_name="test_vit", enqueue=False),
        lambda pk: weights_fetch(fetch_id=pk),
        (weights_job, "fetch_weights"),
        lambda job: weights_fetch_retry(job=job, enqueue=False),
        lambda job: job.paths == [str(snapshot / "model.safetensors")],
    )


KINDS = {
    "weights": _weights_kind,
    "import": _import_kind,
    "run": _run_kind,
    "evaluation": _evaluation_kind,
    "search": _search_kind,
    "report": _report_kind,
}
NEEDS_TORCH = {"run", "evaluation", "search", "weights"}


def _fault(exc: Exception):
    def raise_it(*args, **kwargs):
        raise exc

    return raise_it


def _deliver(kind: Kind, job: TrackedJob) -> TrackedJob:
    """The kind's task as the worker runs it; the job row afterwards. A failed job's task raises JobFailed."""
    try:
        kind.execute(job.pk)
    except JobFailed as exc:
        assert f"{kind.model.__name__} {job.pk} failed" in str(exc)
    return kind.model.objects.get(pk=job.pk)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.ml) if n in NEEDS_TORCH else n for n in KINDS])
def test_every_job_kind_through_the_runner(name, tmp_path, phantom_dataset, monkeypatch, caplog, settings):
    kind = KINDS[name](tmp_path, phantom_dataset)
    module, attribute = kind.fault

    # Success, then the same message delivered again: the finished job is not done twice.
    job = _deliver(kind, kind.new())
    assert (job.status, job.error, job.attempts) == ("succeeded", "", 1) and kind.done(job)
    assert job.progress_percent == 100 and job.finished_at is not None
    assert _deliver(kind, job).attempts == 1

    # An expected failure: the error's own message, no traceback in the worker's log.
    monkeypatch.setattr(module, attribute, _fault(ApplicationError("The input says no.")))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        job = _deliver(kind, kind.new())
    assert (job.status, job.error) == ("failed", "The input says no.") and job.finished_at is not None
    assert "Traceback" not in caplog.text

    # An unexpected failure: type and message recorded, the traceback in the log; then retried to success.
    monkeypatch.setattr(module, attribute, _fault(RuntimeError("injected fault")))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        job = _deliver(kind, kind.new())
    assert (job.status, job.error) == ("failed", f"{UNEXPECTED}: RuntimeError: injected fault")
    assert "Traceback" in caplog.text and "injected fault" in caplog.text
    monkeypatch.undo()
    job = kind.retry(job)
    assert kind.model.objects.get(pk=job.pk).status == "pending"
    job = _deliver(kind, job)
    assert (job.status, job.error, job.attempts) == ("succeeded", "", 2) and kind.done(job)

    # A live job delivered again: the second delivery leaves it to its worker.
    live = kind.new()
    now = timezone.now()
    kind.model.objects.filter(pk=live.pk).update(status="running", heartbeat_at=now, attempts=1, started_at=now)
    live = _deliver(kind, live)
    assert (live.status, live.attempts) == ("running", 1)

    # Its worker lost (no heartbeat for longer than JOB_STALE_SECONDS): a redelivered message takes it over.
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS + 5)
    kind.model.objects.filter(pk=live.pk).update(heartbeat_at=stale)
    job = _deliver(kind, live)
    assert (job.status, job.error, job.attempts) == ("succeeded", "", 2) and kind.done(job)
