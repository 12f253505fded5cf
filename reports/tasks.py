"""Celery tasks of the reports app, and the one place that queues them.

`report_run_start` creates (or retries) the run row and enqueues the task; the task calls the
body in reports.jobs, which never imports this module.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from core.errors import ApplicationError
from core.jobs import JobStatus
from core.tasks import cpu_task
from readerstudy.models import Study
from reports.inputs import study_fingerprint
from reports.jobs import report_run_execute
from reports.models import ReportRun
from reports.options import ReportOptions


# The name it had in the annotations app: messages queued before the move still find it.
@cpu_task(name="annotations.tasks.report_bootstrap", job=ReportRun)
def report_bootstrap(*, report_run_id: int):
    """Compute an agreement report with bootstrap intervals and p-values, and store it on the run."""
    return report_run_execute(report_run_id=report_run_id)


def report_run_start(*, study: Study, options: ReportOptions, created_by=None) -> tuple[ReportRun, bool]:
    """Queue a report with bootstrap for the current data; the same request again returns the same run."""
    if not options.n_resamples:
        raise ApplicationError("A bootstrap report needs at least one resample (e.g. 2000).")
    fingerprint = study_fingerprint(study=study)
    key = options.key(fingerprint)
    try:
        with transaction.atomic():
            run, created = ReportRun.objects.get_or_create(
                study=study,
                key=key,
                defaults={
                    "options": options.as_dict(),
                    "fingerprint": fingerprint,
                    "created_by": created_by,
                    "progress_total": 4,
                    "progress_note": "queued",
                },
            )
    except IntegrityError:  # a concurrent identical request created it first
        run, created = ReportRun.objects.get(study=study, key=key), False
    retried = (
        not created
        and ReportRun.objects.filter(pk=run.pk, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
            status=JobStatus.PENDING,
            error="",
            progress_done=0,
            progress_note="queued again",
            workers_lost=0,
            enqueued_at=None,
        )
        == 1
    )
    if created or retried:
        run_id = run.pk
        transaction.on_commit(lambda: report_bootstrap.delay(report_run_id=run_id))
        run.refresh_from_db()
    return run, created or retried
