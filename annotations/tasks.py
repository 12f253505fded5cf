"""Celery tasks of the annotations app: thin wrappers that take primary keys."""

from core.tasks import cpu_task


@cpu_task
def report_bootstrap(*, report_run_id: int):
    """Compute an agreement report with bootstrap intervals and p-values, and store it on the run."""
    from annotations.report import report_run_execute

    return report_run_execute(report_run_id=report_run_id)
