"""The task decorators, one per queue kind, and the honest outcome of a failed job.

Tasks take primary keys as keyword arguments, are idempotent (a claim is a compare-and-set
on the job row) and are acknowledged late, so a job whose worker dies is delivered again.
They are shared tasks: the Celery application (config.celery) routes each to the queue its
decorator names (`route_task`). Workers are started by `manage.py worker cpu|gpu`
(core.workers: pools and why).

A task whose job ended failed raises `JobFailed` after the failure is recorded on the job row,
so the worker logs "raised expected: JobFailed('ModelRun 7 failed: …')" at INFO level, without
a traceback, instead of "succeeded". The message is acknowledged all the same (no redelivery);
the job is retried from the page or the API.

Limits (docs/configuration.md#jobs-and-workers): every task has a soft and a hard time limit, per
queue (CPU_TASK_SOFT_TIME_LIMIT / CPU_TASK_TIME_LIMIT, GPU_…). The prefork pool of the cpu worker
enforces both (the soft one raises SoftTimeLimitExceeded in the task: the job fails with a message;
the hard one kills the pool process: the job is taken over as a lost worker's, at most
JOB_MAX_WORKER_LOSSES times). The solo pool of the gpu worker enforces neither, so gpu tasks arm
their own soft limit (SIGALRM in the worker's main thread, which runs the task): the run is asked to
stop at its next progress report (between two batches), and SoftTimeLimitExceeded is raised where it
is if it has not within the grace before the hard limit (at most 300 s). A call that never returns
to Python (a hung CUDA kernel) is not interrupted: restart the worker, and the run resumes.

Memory: a task whose process's resident memory passes CPU_TASK_MEMORY_LIMIT_MB (cpu queue) or
GPU_TASK_MEMORY_LIMIT_MB (gpu queue, host memory: the solo worker's own process) is stopped *during* the task
(`memory_watch_start`, a thread of every pool process started by worker_process_init, and of the solo gpu
worker's process, reading /proc/self/statm every MEMORY_POLL_SECONDS): `MemoryLimitExceeded` is raised in the
task, and its job fails with "Stopped: the job needed more than N MB of memory"; a task that goes on growing (a
single C call that allocates) is failed by the watch itself and its process killed, before the kernel's OOM
killer picks a process (for the gpu worker: the worker itself, which its supervisor restarts).
RLIMIT_AS is not used: importing torch alone maps 3.2 GB of address space for 0.56 GB resident.

The outbox: sending a job's task records `enqueued_at` on its row, and an unreachable broker is
`BrokerUnavailable` (HTTP 503, the row stays pending). `jobs_requeue` sends the tasks of pending
rows that never reached the broker and of running rows whose worker was lost; every worker runs it
at start and every JOB_REQUEUE_SECONDS (`requeue_loop_start`), and `manage.py jobs_requeue` runs it once.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

if TYPE_CHECKING:
    from core.jobs import TrackedJob

# core.errors (rest_framework) and core.jobs (models) are imported where used: the Celery application, and so this
# module, is loaded with the settings, before Django's apps.

log = logging.getLogger(__name__)

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"

_COMMON = {"acks_late": True, "reject_on_worker_lost": True}
_QUEUE_OF: dict[str, str] = {}  # task name -> queue, filled by the decorators


@dataclass(frozen=True)
class JobKind:
    """A job model and the task that carries it out, called with the row's pk as `kwarg`."""

    model: type[TrackedJob]
    task: Task
    kwarg: str
    func: object = None  # the task's body, as decorated


JOB_KINDS: list[JobKind] = []  # filled by the decorators' job= argument


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: the queue a task was declared for (task_routes, not the deprecated attribute)."""
    queue = _QUEUE_OF.get(name)
    return {"queue": queue} if queue else None


class JobFailed(Exception):
    """The task's job ended failed; its row holds the message (see the module docstring)."""


class MemoryLimitExceeded(BaseException):
    """The task's process passed its queue's memory limit, CPU_ or GPU_TASK_MEMORY_LIMIT_MB (raised in the task by
    the memory watch). A BaseException, like a KeyboardInterrupt: a body's handler of one file's errors (`except
    Exception`) must not swallow it; the job runner (core.jobs.job_run) fails the job with its message."""


def memory_limit_message(limit_mb: int, queue: str = "cpu") -> str:
    return (
        f"Stopped: the job needed more than {limit_mb:,} MB of memory ({queue.upper()}_TASK_MEMORY_LIMIT_MB, "
        "docs/configuration.md#jobs-and-workers)."
    )


class JobTask(Task):
    """The platform's task class: sending records `enqueued_at` on the job row, and an unreachable broker is
    BrokerUnavailable (a 503 with a message) instead of kombu's OperationalError and its traceback."""

    def apply_async(self, args=None, kwargs=None, **options):
        from core.errors import BrokerUnavailable

        try:
            result = super().apply_async(args, kwargs, **options)
        except OperationalError as exc:
            kind = next((k for k in JOB_KINDS if k.task.name == self.name), None)
            what = f"{kind.model._meta.verbose_name} {(kwargs or {}).get(kind.kwarg)}" if kind else "The job"
            log.warning("broker unreachable while sending %s: %s", self.name, exc)
            raise BrokerUnavailable(
                f"The task queue (broker) is unreachable, so the work could not be queued. {what.capitalize()} "
                "is saved as pending and starts by itself once the queue is back; nothing needs to be sent again."
            ) from exc
        from core.jobs import JobStatus

        for kind in JOB_KINDS:
            if kind.task.name == self.name and (kwargs or {}).get(kind.kwarg) is not None:
                # Only while pending: a worker may already have claimed it (a running row's enqueued_at says when
                # the requeue last sent it, jobs_requeue).
                pending = kind.model.objects.filter(pk=kwargs[kind.kwarg], status=JobStatus.PENDING)
                pending.update(enqueued_at=timezone.now())
        return result

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """A hard time limit killed the task's pool process (Celery calls this in the worker's main process): the job
        fails with a message at once, rather than being taken over as a lost worker's and killed again."""
        if not isinstance(exc, TimeLimitExceeded):
            return
        from core.jobs import job_fail_running

        for kind in JOB_KINDS:
            if kind.task.name == self.name and (kwargs or {}).get(kind.kwarg) is not None:
                limit = exc.args[0] if exc.args else self.time_limit
                queue = _QUEUE_OF.get(self.name, CPU_QUEUE).upper()
                job_fail_running(
                    kind.model,
                    kwargs[kind.kwarg],
                    error=f"Stopped: the job ran past the hard time limit of its queue ({limit} s, "
                    f"{queue}_TASK_TIME_LIMIT) and its process was killed.",
                )
                if not connection.in_atomic_block:
                    connection.close()  # the worker's main process keeps no connection for the pool processes it forks


def _soft_limit_alarm(seconds: int, grace: int):
    """Arm the soft time limit of a task in the solo pool, which has no time limits of its own: after `seconds` the
    job is asked to stop at its next progress report (core.jobs.job_stop_request: a run stops between two batches);
    `grace` seconds later, if it has not, SoftTimeLimitExceeded is raised wherever the task is. A no-op outside the
    main thread or when an alarm is already armed (e.g. by a test runner). Returns the function that disarms it."""
    from core.jobs import job_stop_request

    if (
        seconds <= 0
        or threading.current_thread() is not threading.main_thread()
        or signal.getitimer(signal.ITIMER_REAL)[0]
        or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None)
    ):
        return None
    asked = []

    def expired(signum, frame):
        if not asked:
            asked.append(True)
            job_stop_request(SoftTimeLimitExceeded(seconds))
            signal.setitimer(signal.ITIMER_REAL, max(1, grace))
            return
        raise SoftTimeLimitExceeded(seconds)

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        job_stop_request(None)

    return disarm


def _soft_limit() -> tuple[int, int]:
    """The soft time limit of the gpu task being run and the grace after it (up to the hard limit, at most 300 s):
    the message's limits (the sender's settings, as the prefork pool uses them), else GPU_TASK_*_TIME_LIMIT."""
    from celery import current_task

    limits = getattr(getattr(current_task, "request", None), "timelimit", None) or (None, None)
    soft = int(limits[1] or settings.GPU_TASK_SOFT_TIME_LIMIT)
    hard = int(limits[0] or settings.GPU_TASK_TIME_LIMIT)
    return soft, min(300, max(1, hard - soft))


def _outcome(func, queue: str):
    """Run a task body; raise JobFailed when it returns a job row that ended failed."""

    @functools.wraps(func)
    def task(**kwargs):
        disarm = _soft_limit_alarm(*_soft_limit()) if queue == GPU_QUEUE else None
        try:
            job = func(**kwargs)
        except (SoftTimeLimitExceeded, MemoryLimitExceeded) as exc:  # outside the job's runner (e.g. module loading)
            job = _stopped(func, kwargs, exc)
            if job is None:
                raise
        finally:
            if disarm:
                disarm()
        if getattr(job, "status", None) == "failed":
            raise JobFailed(f"{type(job).__name__} {job.pk} failed: {job.error}")

    return task


def _stopped(func, kwargs: dict, exc: SoftTimeLimitExceeded | MemoryLimitExceeded):
    """Fail the pending or running job of a task stopped by its soft limit before or after its runner; the row."""
    from core.jobs import JobStatus, failure_message

    kind = next((k for k in JOB_KINDS if k.func is func), None)
    if kind is None or kwargs.get(kind.kwarg) is None:
        return None
    rows = kind.model.objects.filter(pk=kwargs[kind.kwarg], status__in=[JobStatus.PENDING, JobStatus.RUNNING])
    rows.update(status=JobStatus.FAILED, error=failure_message(exc), finished_at=timezone.now())
    return kind.model.objects.filter(pk=kwargs[kind.kwarg]).first()


def _limits(queue: str) -> dict:
    if queue == GPU_QUEUE:  # the solo pool ignores these: _soft_limit_alarm stands in for the soft limit
        return {"soft_time_limit": settings.GPU_TASK_SOFT_TIME_LIMIT, "time_limit": settings.GPU_TASK_TIME_LIMIT}
    return {"soft_time_limit": settings.CPU_TASK_SOFT_TIME_LIMIT, "time_limit": settings.CPU_TASK_TIME_LIMIT}


def _register(func, queue: str, options: dict):
    job = options.pop("job", None)
    task = shared_task(**{**_COMMON, "base": JobTask, "throws": (JobFailed,), **_limits(queue), **options})(
        _outcome(func, queue)
    )
    _QUEUE_OF[task.name] = queue
    if job is not None:
        (kwarg,) = [p.name for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY]
        JOB_KINDS.append(JobKind(model=job, task=task, kwarg=kwarg, func=func))
    return task


def cpu_task(func=None, **options):
    """Register a task on the CPU queue (imports, statistics, reports). `job=Model`: the task carries out jobs of
    that TrackedJob model (its one keyword argument is the row's pk), so `jobs_requeue` can send it again."""
    return _register(func, CPU_QUEUE, options) if func else (lambda f: _register(f, CPU_QUEUE, options))


def gpu_task(func=None, **options):
    """Register a task on the GPU queue (train, embed, index): run its workers with -c 1. `job=`: see cpu_task."""
    return _register(func, GPU_QUEUE, options) if func else (lambda f: _register(f, GPU_QUEUE, options))


def jobs_requeue(*, limit: int = 500) -> dict[str, int]:
    """Send again the task of every job that needs one; {model name: jobs sent}.

    - pending, never sent (the broker was unreachable, or the process died between commit and send);
    - pending, sent longer than the broker's visibility timeout ago (the message was lost with the broker's data);
    - running, with its worker lost (a process of this host that is gone, or a heartbeat older than
      JOB_STALE_SECONDS) and not sent since: the claim then takes it over (core.jobs.job_claim).

    BrokerUnavailable when the broker cannot be reached (what was not sent stays to be sent). Each row is marked sent
    with a compare-and-set before sending, so workers running this at the same time send
    it once; a duplicate message would be harmless anyway (the claim runs a job once)."""
    from core.errors import BrokerUnavailable
    from core.jobs import JobStatus, claimant_gone

    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    lost_message = now - timedelta(seconds=settings.BROKER_VISIBILITY_TIMEOUT)
    grace = now - timedelta(seconds=settings.JOB_REQUEUE_GRACE_SECONDS)
    sent: dict[str, int] = {}
    for kind in JOB_KINDS:
        unsent = Q(status=JobStatus.PENDING) & (
            Q(enqueued_at__isnull=True, created_at__lt=grace) | Q(enqueued_at__lt=lost_message)
        )
        not_since = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=F("heartbeat_at"))
        running = Q(status=JobStatus.RUNNING) & not_since
        rows = kind.model.objects.filter(unsent | running).values("pk", "status", "claimed_by", "heartbeat_at")
        for row in rows.order_by("pk")[:limit]:
            if row["status"] == JobStatus.RUNNING:
                gone = claimant_gone(row["claimed_by"])
                if gone is None:
                    gone = row["heartbeat_at"] is None or row["heartbeat_at"] < stale
                if not gone:
                    continue
            if not kind.model.objects.filter(unsent | running, pk=row["pk"]).update(enqueued_at=now):
                continue  # another worker's requeue sent it
            try:
                kind.task.apply_async(kwargs={kind.kwarg: row["pk"]})
            except BrokerUnavailable:
                kind.model.objects.filter(pk=row["pk"], enqueued_at=now).update(enqueued_at=None)
                raise
            sent[kind.model.__name__] = sent.get(kind.model.__name__, 0) + 1
            log.info("requeue: %s %s sent again (%s)", kind.model.__name__, row["pk"], row["status"])
    return sent


_loop_started = threading.Event()


def requeue_loop_start() -> None:
    """Run `jobs_requeue` now and every JOB_REQUEUE_SECONDS in a daemon thread of this (worker) process."""
    if _loop_started.is_set() or settings.JOB_REQUEUE_SECONDS <= 0:
        return
    _loop_started.set()

    def loop():
        while True:
            from core.errors import BrokerUnavailable

            try:
                close_old_connections()
                jobs_requeue()
            except BrokerUnavailable:
                log.warning("requeue: the broker is unreachable; waiting jobs are sent once it is back")
            except Exception:
                log.exception("requeue failed; trying again in %s s", settings.JOB_REQUEUE_SECONDS)
            finally:
                connection.close()  # no connection is held between passes (nor inherited by a forked pool process)
            _loop_stop.wait(settings.JOB_REQUEUE_SECONDS)
            if _loop_stop.is_set():
                return

    threading.Thread(target=loop, name="jobs-requeue", daemon=True).start()


_loop_stop = threading.Event()


# --------------------------------------------------------------------------- memory (docs/configuration.md)

#: How often the memory watch reads the process's resident memory.
MEMORY_POLL_SECONDS = 0.1
#: A task still over its limit this long after MemoryLimitExceeded was raised in it (stuck in C code, or the
#: exception swallowed), or over 1.25 × the limit at any time, is failed by the watch and its process killed.
MEMORY_KILL_AFTER_SECONDS = 10
MEMORY_KILL_FACTOR = 1.25

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """This process's resident memory (RSS) in MB, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


@dataclass
class _Watched:
    """The cpu task being run in this process, as the memory watch sees it."""

    kind: JobKind | None
    pk: object
    limit: int  # MB: its queue's limit
    queue: str
    raised_at: float = 0.0


_watched: list[_Watched] = []  # the running task (at most one per pool process)


@task_prerun.connect
def _watch_task(sender=None, kwargs=None, **_):
    queue = _QUEUE_OF.get(sender.name) if sender is not None else None
    limit = _memory_limit(queue)
    if not limit:
        return
    kind = next((k for k in JOB_KINDS if k.task.name == sender.name), None)
    _watched[:] = [_Watched(kind, (kwargs or {}).get(kind.kwarg) if kind else None, limit, queue)]


def _memory_limit(queue: str | None) -> int:
    """The memory limit of a task of `queue` in MB (0: none)."""
    if queue == CPU_QUEUE:
        return settings.CPU_TASK_MEMORY_LIMIT_MB
    if queue == GPU_QUEUE:
        return settings.GPU_TASK_MEMORY_LIMIT_MB
    return 0


@task_postrun.connect
def _unwatch_task(**_):
    stopped = bool(_watched and _watched[0].raised_at)
    _watched.clear()
    if stopped:  # the stopped task's frames (in reference cycles with its exception) are freed now, not later:
        gc.collect()  # the next task starts under the limit


def _raise_memory_limit(signum, frame):
    if _watched and _watched[0].raised_at and _watched[0].raised_at > 0:
        _watched[0].raised_at = -_watched[0].raised_at  # raised once per task
        raise MemoryLimitExceeded(memory_limit_message(_watched[0].limit, _watched[0].queue))


@worker_process_init.connect
def _memory_watch_in_pool_process(**_):
    memory_watch_start()


@worker_init.connect
def _memory_watch_in_solo_worker(sender=None, **_):
    """The solo pool (the gpu worker) runs its tasks in the worker's own main thread: the watch runs there."""
    pool = getattr(sender, "pool_cls", "")
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    if "solo" in name.lower():
        memory_watch_start()


def memory_watch_start() -> threading.Thread | None:
    """Watch this process's resident memory while a task runs (a daemon thread; the handler of SIGUSR2, which
    raises MemoryLimitExceeded in the main thread, where the task runs). None when both limits are 0."""
    if not (settings.CPU_TASK_MEMORY_LIMIT_MB or settings.GPU_TASK_MEMORY_LIMIT_MB):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    signal.signal(signal.SIGUSR2, _raise_memory_limit)

    def watch():
        while True:
            time.sleep(MEMORY_POLL_SECONDS)
            task = _watched[0] if _watched else None
            if task is None:
                continue
            try:
                rss = resident_mb()
            except OSError:
                return
            limit = task.limit
            if rss <= limit:
                continue
            if not task.raised_at:
                log.warning("task memory %.0f MB over the limit of %s MB: stopping the task", rss, limit)
                task.raised_at = time.monotonic()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2)
            elif rss > limit * MEMORY_KILL_FACTOR or time.monotonic() - abs(task.raised_at) > MEMORY_KILL_AFTER_SECONDS:
                _memory_kill(task, rss, limit)

    thread = threading.Thread(target=watch, name="memory-watch", daemon=True)
    thread.start()
    return thread


def _memory_kill(task: _Watched, rss: float, limit: int) -> None:
    """The task did not stop: fail its job from here and kill this process (the worker starts another)."""
    log.error("task memory %.0f MB, limit %s MB: the task did not stop; killing its process", rss, limit)
    try:
        if task.kind is not None and task.pk is not None:
            from core.jobs import job_fail_running

            job_fail_running(task.kind.model, task.pk, error=memory_limit_message(limit, task.queue))
    finally:
        os.kill(os.getpid(), signal.SIGKILL)
