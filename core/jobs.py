"""Long-running work tracked in the database: status, progress, the compare-and-set claim, one runner.

Every Celery job row (imports, model runs and their re-evaluations, upload searches, reports)
inherits `TrackedJob`, and every task body goes through `job_run`: it claims the row with
`job_claim`, an UPDATE ... WHERE status = pending (or running with a stale heartbeat) that only
one worker can win, so a task delivered twice does the work once; runs the body; and records the
end, *whatever* the body raised: an expected error (ApplicationError and the kind's own) with its
message, anything else as "Unexpected error: Type: message" with the traceback in the worker's log.
No job is left running by an exception. `job_retry` puts a failed job back to pending.
Progress is written with `job_progress` (a single UPDATE, no read-modify-write) and shown by the
progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from core.errors import ApplicationError, Conflict

log = logging.getLogger(__name__)
UNEXPECTED = "Unexpected error"  # how the message of a failure the code did not foresee begins


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


def job_progress(
    job: TrackedJob, *, done: int | None = None, total: int | None = None, note: str | None = None
) -> None:
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


def failure_message(exc: BaseException, expected: tuple[type[BaseException], ...] = ()) -> str:
    """The message a failed job shows: the error's own for expected errors, else its type and text."""
    if isinstance(exc, (ApplicationError, *expected)):
        return getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{UNEXPECTED}: {type(exc).__name__}: {exc}"


def job_run(
    model: type[TrackedJob],
    pk: int,
    body: Callable[[TrackedJob], None],
    *,
    expected: tuple[type[BaseException], ...] = (),
) -> TrackedJob | None:
    """Claim job `pk`, run `body(job)` and record how it ended; the job, or None when it was not claimed.

    The body may finish the job itself (job_finish); otherwise returning means succeeded. Any exception
    fails the job with `failure_message` (unexpected ones are logged with their traceback) and is not
    re-raised: the worker carries on, and the task reports the failure (core.tasks.JobFailed).
    """
    if not job_claim(model, pk):
        log.info("%s %s already claimed or finished; nothing to do", model.__name__, pk)
        return None
    job = model.objects.get(pk=pk)
    try:
        body(job)
    except Exception as exc:
        if not isinstance(exc, (ApplicationError, *expected)):
            log.exception("%s %s failed", model.__name__, pk)
        job_finish(job, status=JobStatus.FAILED, error=failure_message(exc, expected))
        return job
    job.refresh_from_db(fields=["status", "error", "finished_at"])  # the body may have finished it
    if not job.is_finished:
        job_finish(job, status=JobStatus.SUCCEEDED)
    return job


def job_retry(job: TrackedJob, *, what: str) -> TrackedJob:
    """Put a failed or cancelled job back to pending (a compare-and-set: two clicks queue it once) and return
    it fresh; Conflict, naming `what`, for a job in any other state. The caller queues its task."""
    retried = (
        type(job)
        .objects.filter(pk=job.pk, status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .update(status=JobStatus.PENDING, error="", progress_done=0, progress_note="queued again", finished_at=None)
    )
    job.refresh_from_db()
    if not retried:
        raise Conflict(f"{what} is {job.status}; only a failed one can be retried.")
    return job
