"""Reports with bootstrap computed by a task: queued once, claimed once, stored once, failures shown."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotations.models import Answer
from core.errors import ApplicationError
from reports import build
from reports.inputs import study_fingerprint
from reports.jobs import report_latest, report_run_current, report_run_execute, report_run_find
from reports.models import ReportRun
from reports.options import ReportOptions
from reports.tasks import report_bootstrap, report_run_start

OPTIONS = ReportOptions(n_resamples=200, seed=1)


@pytest.fixture
def study(generate):
    return generate(mode="choose_k", n_cases=8, n_readers=3, q=0.6, status="open", missing={0: [7]}).study


def test_start_twice_queues_one_run(study, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as first:
        run, created = report_run_start(study=study, options=OPTIONS)
    with django_capture_on_commit_callbacks(execute=False) as second:
        again, created_again = report_run_start(study=study, options=OPTIONS)
    assert created and not created_again and again.pk == run.pk
    assert len(first) == 1 and len(second) == 0
    assert ReportRun.objects.count() == 1 and run.status == "pending"


def test_task_run_twice_stores_one_result(study):
    run, _ = report_run_start(study=study, options=OPTIONS)
    report_bootstrap(report_run_id=run.pk)
    run.refresh_from_db()
    stored = run.result
    report_bootstrap(report_run_id=run.pk)  # a redelivered message: the claim refuses it
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 1 and run.result == stored
    assert ReportRun.objects.count() == 1
    assert (run.progress_done, run.progress_total, run.progress_percent) == (4, 4, 100)
    assert stored["uncertainty"]["n_resamples"] == 200 and stored["uncertainty"]["seed"] == 1
    assert stored["choose_k"]["fleiss_kappa"]["ci_low"] is not None and stored["interim"] is True
    assert stored["tests"]["vs_random"]


def test_new_answers_make_a_new_run_and_the_old_one_stale(study):
    run, _ = report_run_start(study=study, options=OPTIONS)
    report_run_execute(report_run_id=run.pk)
    run.refresh_from_db()
    assert report_run_current(run, fingerprint=study_fingerprint(study=study))
    assignment = study.assignments.order_by("reader__username").first()
    Answer.objects.create(
        assignment=assignment, case=study.cases.order_by("position").last(), submitted_at=timezone.now()
    )
    assert not report_run_current(run, fingerprint=study_fingerprint(study=study))
    newer, created = report_run_start(study=study, options=OPTIONS)
    assert created and newer.pk != run.pk
    assert report_run_find(study=study, options=ReportOptions()) == newer  # latest for these analysis options


def test_failure_is_recorded_and_a_new_request_retries(study, monkeypatch, django_capture_on_commit_callbacks):
    run, _ = report_run_start(study=study, options=OPTIONS)

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "report_for_study", boom)
    report_run_execute(report_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "Unexpected error: RuntimeError: disk full" and run.result is None
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again, retried = report_run_start(study=study, options=OPTIONS)
    assert retried and again.pk == run.pk and again.status == "pending" and len(callbacks) == 1
    report_run_execute(report_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 2


def test_application_error_message_is_kept(study):
    run = ReportRun.objects.create(
        study=study, options={**OPTIONS.as_dict(), "runs": [999999]}, key="x", fingerprint="y"
    )
    report_run_execute(report_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "not runs of this study's dataset" in run.error


def test_a_bootstrap_report_needs_resamples(study):
    with pytest.raises(ApplicationError, match="at least one resample"):
        report_run_start(study=study, options=ReportOptions())


def test_stored_result_is_served_while_current(study):
    run, _ = report_run_start(study=study, options=OPTIONS)
    report_run_execute(report_run_id=run.pk)
    report, shown = report_latest(study=study, options=ReportOptions())
    assert shown.pk == run.pk and report["uncertainty"]["n_resamples"] == 200
