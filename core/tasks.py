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
"""

from __future__ import annotations

import functools

from celery import shared_task

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"

_COMMON = {"acks_late": True, "reject_on_worker_lost": True}
_QUEUE_OF: dict[str, str] = {}  # task name -> queue, filled by the decorators


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: the queue a task was declared for (task_routes, not the deprecated attribute)."""
    queue = _QUEUE_OF.get(name)
    return {"queue": queue} if queue else None


class JobFailed(Exception):
    """The task's job ended failed; its row holds the message (see the module docstring)."""


def _outcome(func):
    """Run a task body; raise JobFailed when it returns a job row that ended failed."""

    @functools.wraps(func)
    def task(**kwargs):
        job = func(**kwargs)
        if getattr(job, "status", None) == "failed":
            raise JobFailed(f"{type(job).__name__} {job.pk} failed: {job.error}")

    return task


def _register(func, queue: str, options: dict):
    task = shared_task(**{**_COMMON, "throws": (JobFailed,), **options})(_outcome(func))
    _QUEUE_OF[task.name] = queue
    return task


def cpu_task(func=None, **options):
    """Register a task on the CPU queue (imports, statistics, reports)."""
    return _register(func, CPU_QUEUE, options) if func else (lambda f: _register(f, CPU_QUEUE, options))


def gpu_task(func=None, **options):
    """Register a task on the GPU queue (train, embed, index): run its workers with -c 1."""
    return _register(func, GPU_QUEUE, options) if func else (lambda f: _register(f, GPU_QUEUE, options))
