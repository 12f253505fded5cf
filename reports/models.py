"""Agreement reports computed on the worker.

`ReportRun` moved here from the annotations app: its table keeps its name
(`annotations_reportrun`), so the move copied no row (reports/migrations/0001_initial.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.jobs import TrackedJob


class ReportRun(TrackedJob):
    """An agreement report computed on the worker with bootstrap CIs and p-values (reports.jobs).

    `key` hashes the report options and the data fingerprint (answers, cases, readers, runs,
    study status) at the time of the request: asking twice for the same report of the same data
    finds this row instead of starting a second job. `result` is the JSON export.
    """

    study = models.ForeignKey("readerstudy.Study", on_delete=models.CASCADE, related_name="report_runs")
    options = models.JSONField(default=dict)
    key = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64)
    result = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "annotations_reportrun"  # created by the annotations app before the move
        ordering = ["-created_at"]
        # The report page looks a run up by (study, key); the constraint makes a repeated request a no-op.
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="report_run_unique_key")]

    def __str__(self) -> str:
        return f"Report #{self.pk} of {self.study}"
