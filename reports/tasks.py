"""Celery tasks of the reports app: thin wrappers that take primary keys."""

from core.tasks import cpu_task


# The name it had in the annotations app: messages queued before the move still find it.
@cpu_task(name="annotations.tasks.report_bootstrap")
def report_bootstrap(*, report_run_id: int):
    """Compute an agreement report with bootstrap intervals and p-values, and store it on the run."""
    from reports.report import report_run_execute

    return report_run_execute(report_run_id=report_run_id)
