"""Long-running work tracked in the database: status, progress, the compare-and-set claim, one runner.

Every Celery job row (imports, model runs and their re-evaluations, upload searches, reports)
inherits `TrackedJob`, and every task body goes through `job_run`: it claims the row with
`job_claim`, an UPDATE ... WHERE status = pending that only one worker can win, so a task
delivered twice does the work once; runs the body; and records the end, *whatever* the body raised:
an expected error (ApplicationError and the kind's own) with its message, anything else as
"Unexpected error: Type: message" with the traceback in the worker's log. No job is left running
by an exception. `job_retry` puts a failed job back to pending.

A job whose worker died is taken over by the next delivery of its task, with nobody clicking
anything (docs/architecture.md#job-runner): the claim records the claiming process
(`claimed_by`: host, pid and the process's start time), and a running job may be claimed again
when that process is gone (same host: checked at once, so a task redelivered after its pool
process was SIGKILLed goes on immediately; a live one is never taken over) or, for a claimant on
another host, when its heartbeat is older than JOB_STALE_SECONDS. Job bodies are re-runnable: they skip what an
earlier attempt committed. A job whose worker was lost JOB_MAX_WORKER_LOSSES times (a file
that exhausts memory every time) is failed with a message instead of being tried for ever.
A failure the database refuses to record (SQLite in a full data folder: "database or disk is full") is kept by
the process and written as soon as the database takes writes again (`failures_unrecorded_flush`: a thread tries
every FAILURE_RECORD_RETRY_SECONDS, and every job the process starts tries first); the worker's log says so.
Progress is written with `job_progress` (a single UPDATE, no read-modify-write) and shown by the
progress bar.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, models
from django.db.models import Case, F, Value, When
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


#: `claimed_by` of a job whose work runs as parts (core.fanout): no process holds it; its parts' progress is its
#: heartbeat, and the last part to finish queues it again for its finishing step.
PARTS_CLAIMANT = "parts"
#: `claimed_by` of a pending job its last part queued again for its finishing step (core.fanout).
PARTS_DONE = "parts done"


class TrackedJob(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_note = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The process that claimed the job ("host pid start-time", see worker_identity): a redelivered task
    # takes over when it is gone.
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    workers_lost = models.PositiveSmallIntegerField(default=0)  # takeovers since the job was last queued by a user
    # When the job's task message last reached the broker (core.tasks): the job row is the outbox, and
    # pending rows never sent are sent again by the requeue (core.tasks.jobs_requeue).
    enqueued_at = models.DateTimeField(null=True, blank=True)
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

    @property
    def waiting_for_broker(self) -> bool:
        """Pending, and its task never reached the broker (it was unreachable): the requeue sends it once it is back."""
        return self.status == JobStatus.PENDING and self.enqueued_at is None

    @property
    def worker_lost(self) -> bool:
        """Running without a heartbeat for JOB_STALE_SECONDS: its worker died; the next one takes the job over."""
        return (
            self.status == JobStatus.RUNNING
            and self.claimed_by != PARTS_CLAIMANT  # its parts may wait in a busy queue (core.fanout)
            and self.heartbeat_at is not None
            and (timezone.now() - self.heartbeat_at).total_seconds() > settings.JOB_STALE_SECONDS
        )

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


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), "" where unknown, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): whether the pid exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "
    if fields[0] in ("Z", "X"):  # a zombie: killed, not yet reaped by its parent
        return None
    return fields[19]


def worker_identity() -> str:
    """This process as `claimed_by` records it: host, pid and start time (a reused pid is another process)."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {_process_start(pid) or ''}".strip()


def claimant_gone(claimed_by: str) -> bool | None:
    """Whether the process `claimed_by` names is gone: True (killed, out of memory) or False (alive) for a process of
    this host; None for one of another host or an unknown claimant (only its heartbeat tells)."""
    parts = claimed_by.split()
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdecimal():
        return None
    start = _process_start(int(parts[1]))
    return start is None or (len(parts) > 2 and bool(start) and start != parts[2])


def job_claim(model: type[TrackedJob], pk: int) -> bool:
    """Move a job to RUNNING if it is pending, or running with a lost worker; True if won.

    A lost worker is one whose claiming process is gone (a process of this host: checked directly, whatever its
    heartbeat says) or, for a claimant on another host, whose heartbeat is older than JOB_STALE_SECONDS. A live
    job is never claimed twice: each claim is a compare-and-set on the row.
    A job whose worker was lost JOB_MAX_WORKER_LOSSES times is failed instead (see the module docstring).
    """
    now = timezone.now()
    me = worker_identity()
    # A job queued again by its last part (core.fanout: claimed_by PARTS_DONE) keeps the start of its work.
    started = Case(When(claimed_by=PARTS_DONE, then=F("started_at")), default=Value(now))
    won = model.objects.filter(pk=pk, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING, started_at=started, heartbeat_at=now, attempts=F("attempts") + 1, claimed_by=me
    )
    if won:
        return True
    row = model.objects.filter(pk=pk, status=JobStatus.RUNNING).values("claimed_by", "heartbeat_at", "workers_lost")
    row = row.first()
    if row is None:
        return False
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    gone = claimant_gone(row["claimed_by"])
    if gone is None:  # another host's process, or unknown: its heartbeat tells
        gone = row["heartbeat_at"] is None or row["heartbeat_at"] < stale
    if not gone:
        return False
    if row["claimed_by"] == PARTS_CLAIMANT:  # waiting for its parts (core.fanout): no worker was lost
        same = model.objects.filter(pk=pk, status=JobStatus.RUNNING, claimed_by=PARTS_CLAIMANT)
        return bool(same.update(heartbeat_at=now, attempts=F("attempts") + 1, claimed_by=me))
    same = model.objects.filter(pk=pk, status=JobStatus.RUNNING, claimed_by=row["claimed_by"])
    same = same.filter(heartbeat_at=row["heartbeat_at"])  # nobody else took it over meanwhile
    if row["workers_lost"] + 1 >= settings.JOB_MAX_WORKER_LOSSES:
        error = (
            f"The worker running this job was lost {row['workers_lost'] + 1} times (killed, out of memory, or over "
            "the time limit: see the worker's log); it is not tried again automatically. Retry it once the cause "
            "is fixed."
        )
        if same.update(status=JobStatus.FAILED, error=error, finished_at=now, workers_lost=F("workers_lost") + 1):
            log.warning("%s %s: %s", model.__name__, pk, error)
        return False
    won = same.update(
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        workers_lost=F("workers_lost") + 1,
        claimed_by=me,
        progress_note="resumed after its worker was lost",
    )
    if won:
        log.warning("%s %s: its worker (%s) was lost; resuming", model.__name__, pk, row["claimed_by"] or "unknown")
    return won == 1


_stop_requested: list[BaseException] = []  # a stop asked for by a time limit (core.tasks), raised by job_progress


def job_stop_request(exc: BaseException | None) -> None:
    """Ask the running job to stop at its next `job_progress` with `exc` (None: withdraw the request).

    The gpu worker's soft time limit stops a run this way, between two batches, rather than by an exception
    raised wherever the alarm strikes (inside torch.save it would leave a half-written checkpoint)."""
    _stop_requested[:] = [exc] if exc is not None else []


def job_progress(
    job: TrackedJob, *, done: int | None = None, total: int | None = None, note: str | None = None
) -> None:
    """Write progress in one UPDATE (and on the instance); raise the stop a time limit asked for (job_stop_request)."""
    if _stop_requested:
        raise _stop_requested.pop()
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


def job_fail_running(model: type[TrackedJob], pk: int, *, error: str) -> bool:
    """Fail a job that is still running (its process was killed by a limit); True if it was running."""
    return bool(
        model.objects.filter(pk=pk, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=error, finished_at=timezone.now()
        )
    )


def failure_message(exc: BaseException, expected: tuple[type[BaseException], ...] = ()) -> str:
    """The message a failed job shows: the error's own for expected errors, else its type and text."""
    from core.tasks import MemoryLimitExceeded

    if isinstance(exc, MemoryLimitExceeded):
        return str(exc)
    if isinstance(exc, DatabaseError) and _disk_full(exc):
        return (
            f"Stopped: the database could not be written ({str(exc).strip()}): the disk holding it is full. "
            "Free space, then retry."
        )
    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            "Stopped: the job ran longer than the time limit of its queue (CPU_TASK_SOFT_TIME_LIMIT or "
            "GPU_TASK_SOFT_TIME_LIMIT, docs/configuration.md#jobs-and-workers)."
        )
    if isinstance(exc, (ApplicationError, *expected)):
        return getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{UNEXPECTED}: {type(exc).__name__}: {exc}"


def _stopped_by(exc: BaseException) -> BaseException | None:
    """The memory or time limit's exception that stopped the task (core.tasks: raised by a signal handler), when
    `exc` is it or was raised while it was being handled (its context or cause); else None."""
    from core.tasks import MemoryLimitExceeded

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (MemoryLimitExceeded, SoftTimeLimitExceeded)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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
    failures_unrecorded_flush()
    if not job_claim(model, pk):
        log.info("%s %s already claimed or finished; nothing to do", model.__name__, pk)
        return None
    job = model.objects.get(pk=pk)
    from core.tasks import MemoryLimitExceeded

    try:
        body(job)
    except (Exception, MemoryLimitExceeded) as exc:
        stop = _stopped_by(exc)
        if stop is not None:
            # Raised by a signal wherever the task was: perhaps inside a PostgreSQL query, whose connection is then
            # unusable ("another command is already in progress"), and the error that reached here may be the
            # one the interrupted query's clean-up raised. The job fails with the stop's message, on a new
            # connection (not inside a transaction of the caller's, as in a test; sqlite3 queries run in one C
            # call, which a signal does not interrupt).
            if connection.vendor == "postgresql" and not connection.in_atomic_block:
                connection.close()
            exc = stop
        elif not isinstance(exc, (ApplicationError, *expected)):
            log.exception("%s %s failed", model.__name__, pk)
        _record_failure(job, failure_message(exc, expected))
        return job
    job.refresh_from_db(fields=["status", "error", "finished_at", "claimed_by"])  # the body may have finished it
    if job.status == JobStatus.PENDING or (job.status == JobStatus.RUNNING and job.claimed_by == PARTS_CLAIMANT):
        return job  # its work runs as parts (core.fanout): the last one queues (or queued) the job again to finish
    if not job.is_finished:
        job_finish(job, status=JobStatus.SUCCEEDED)
    return job


class TrackedPart(TrackedJob):
    """A part of a job whose work is spread over several tasks (core.fanout): a job of its own (claimed, taken
    over, requeued like any), numbered by `index`. A concrete part model adds
    `parent = models.ForeignKey(<job model>, on_delete=models.CASCADE, related_name="parts")`."""

    index = models.PositiveIntegerField()

    class Meta:
        abstract = True
        ordering = ["index"]


def job_retry(job: TrackedJob, *, what: str) -> TrackedJob:
    """Put a failed or cancelled job back to pending (a compare-and-set: two clicks queue it once) and return
    it fresh; Conflict, naming `what`, for a job in any other state. The caller queues its task."""
    retried = (
        type(job)
        .objects.filter(pk=job.pk, status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .update(
            status=JobStatus.PENDING,
            error="",
            progress_done=0,
            progress_note="queued again",
            finished_at=None,
            workers_lost=0,
            enqueued_at=None,
        )
    )
    if retried and hasattr(job, "parts"):  # its parts (core.fanout) are planned afresh
        job.parts.all().delete()
    job.refresh_from_db()
    if not retried:
        raise Conflict(f"{what} is {job.status}; only a failed one can be retried.")
    return job


# --------------------------------------------------------------------------- failures the database refused

#: Seconds between two tries to write a failure the database refused.
FAILURE_RECORD_RETRY_SECONDS = 10

_unrecorded: dict[tuple[type, int], tuple[str, str]] = {}  # (model, pk) -> (error, claimed_by)
_unrecorded_lock = threading.Lock()
_retrying = threading.Event()


def _disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "disk is full" in text or "no space left" in text or "disk quota" in text


def _record_failure(job: TrackedJob, error: str) -> None:
    """job_finish(failed), or, when the database refuses the write, keep it to be written later (not raised: the
    worker carries on, and the job is not shown succeeded)."""
    try:
        job_finish(job, status=JobStatus.FAILED, error=error)
        return
    except DatabaseError as exc:
        refused = exc
    key = (type(job), job.pk)
    with _unrecorded_lock:
        _unrecorded[key] = (error, job.claimed_by or worker_identity())
    log.error(
        "%s %s failed (%s), and the database refused to record it (%s): it stays running in the database until the "
        "failure can be written; this process tries again every %s s (free space on the disk holding the database)",
        type(job).__name__,
        job.pk,
        error,
        refused,
        FAILURE_RECORD_RETRY_SECONDS,
    )
    _retry_start()


def failures_unrecorded_flush() -> int:
    """Write the failures this process could not record; how many are still waiting. Only a job still running
    under this process's claim is failed (another worker may have taken it over and finished it since)."""
    with _unrecorded_lock:
        waiting = list(_unrecorded.items())
    for (model, pk), (error, claimant) in waiting:
        try:
            model.objects.filter(pk=pk, status=JobStatus.RUNNING, claimed_by=claimant).update(
                status=JobStatus.FAILED, error=error, finished_at=timezone.now()
            )
        except DatabaseError:
            continue
        with _unrecorded_lock:
            _unrecorded.pop((model, pk), None)
        log.warning("%s %s: its failure is recorded now (%s)", model.__name__, pk, error)
    with _unrecorded_lock:
        return len(_unrecorded)


def _retry_start() -> None:
    if _retrying.is_set():
        return
    _retrying.set()

    def retry():
        try:
            while True:
                threading.Event().wait(FAILURE_RECORD_RETRY_SECONDS)
                close_old_connections()
                try:
                    if not failures_unrecorded_flush():
                        return
                finally:
                    connection.close()
        finally:
            _retrying.clear()
            if _unrecorded:  # one added while this thread was ending
                _retry_start()

    threading.Thread(target=retry, name="job-failure-record", daemon=True).start()
