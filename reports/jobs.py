"""Reports computed on the worker (bootstrap CIs and p-values): the worker's body, and which report to show.

Queueing one is `reports.tasks.report_run_start` (the tasks module enqueues; this module never
imports it, so the worker's body and the task form no import circle).
"""

from __future__ import annotations

from core.errors import ApplicationError
from core.jobs import JobStatus, job_progress, job_run
from readerstudy.models import Study
from reports import build
from reports.analysis import report_inputs
from reports.inputs import study_fingerprint
from reports.models import ReportRun
from reports.options import ReportOptions, options_from_dict


def report_run_find(*, study: Study, options: ReportOptions) -> ReportRun | None:
    """The latest report run of the study computed with the same analysis options (any bootstrap settings)."""
    wanted = options.analysis()
    for run in ReportRun.objects.filter(study=study).order_by("-created_at", "-pk"):
        try:
            if options_from_dict(run.options).analysis() == wanted:
                return run
        except ApplicationError:  # options stored by an older version
            continue
    return None


def report_run_execute(*, report_run_id: int) -> ReportRun | None:
    """Worker body: claim the run (compare-and-set), compute the report with bootstrap, store it (core runner:
    any failure is recorded; asking for the same report again retries it, see reports.tasks.report_run_start)."""

    def body(run: ReportRun) -> None:
        run = ReportRun.objects.select_related("study", "study__dataset", "study__ground_truth_reader").get(pk=run.pk)
        options = options_from_dict(run.options)
        result = build.report_for_study(
            study=run.study,
            options=options,
            progress=lambda done, total, note: job_progress(run, done=done, total=total, note=note),
        )
        ReportRun.objects.filter(pk=run.pk).update(result=result, progress_done=4, progress_note="done")

    return job_run(ReportRun, report_run_id, body)


def report_run_current(run: ReportRun | None, *, fingerprint: str) -> bool:
    """True when a run succeeded on data identical to the given fingerprint (computed at execution)."""
    return bool(
        run and run.status == JobStatus.SUCCEEDED and run.result and run.result.get("fingerprint") == fingerprint
    )


def report_latest(
    *, study: Study, options: ReportOptions, run: ReportRun | None = None
) -> tuple[dict, ReportRun | None]:
    """The report to show or download: the given run's result, a current bootstrap result, else a fresh one."""
    fingerprint = study_fingerprint(study=study)
    if run is not None and run.status == JobStatus.SUCCEEDED and run.result:
        return run.result, run
    latest = report_run_find(study=study, options=options)
    if report_run_current(latest, fingerprint=fingerprint):
        return latest.result, latest
    plain = options.without_bootstrap()
    return build.report_build(report_inputs(study=study, options=plain), plain, fingerprint=fingerprint), None
