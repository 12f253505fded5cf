"""Long-running work tracked in the database: status, progress and the compare-and-set claim.

Every Celery job row (imports, model runs, reports) inherits `TrackedJob`. A task claims its
row with `job_claim`, an UPDATE ... WHERE status IN (pending, interrupted) that only one
worker can win, so a task delivered twice does the work once. Progress is written with
`job_progress` (a single UPDATE, no read-modify-write) and shown by the progress bar.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TrackedJob(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_note = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def progress_percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, int(100 * self.progress_done / self.progress_total))

    def progress_dict(self) -> dict:
        return {
            "id": self.pk,
            "status": self.status,
            "done": self.progress_done,
            "total": self.progress_total,
            "percent": self.progress_percent,
            "note": self.progress_note,
            "error": self.error,
            "finished": self.is_finished,
        }


def job_claim(model: type[TrackedJob], pk: int) -> bool:
    """Move a job to RUNNING if it is pending, or running with a stale heartbeat; True if won.

    A job whose worker died (killed, out of memory) stops beating; after JOB_STALE_SECONDS a
    redelivered message or a `resume` may claim it again. A live job is never claimed twice.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    claimable = Q(status=JobStatus.PENDING) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    return (
        model.objects.filter(claimable, pk=pk).update(
            status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
        )
        == 1
    )


def job_progress(job: TrackedJob, *, done: int | None = None, total: int | None = None, note: str | None = None) -> None:
    """Write progress in one UPDATE (and on the instance)."""
    fields: dict = {"heartbeat_at": timezone.now()}
    if done is not None:
        fields["progress_done"] = done
    if total is not None:
        fields["progress_total"] = total
    if note is not None:
        fields["progress_note"] = note[:300]
    for name, value in fields.items():
        setattr(job, name, value)
    type(job).objects.filter(pk=job.pk).update(**fields)


def job_finish(job: TrackedJob, *, status: str, error: str = "") -> None:
    """Record the end of a job."""
    job.status, job.error, job.finished_at = status, error, timezone.now()
    type(job).objects.filter(pk=job.pk).update(status=status, error=error, finished_at=job.finished_at)
