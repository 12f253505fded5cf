"""The Celery application and the two task decorators (one per queue kind).

Tasks take primary keys as keyword arguments, are idempotent (a claim is a compare-and-set
on the job row) and are acknowledged late, so a job whose worker dies is delivered again.
GPU workers run with concurrency 1 and prefetch 1: `celery -A readerstudy worker -Q gpu -c 1`.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")

app = Celery("readerstudy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"

_COMMON = {"acks_late": True, "reject_on_worker_lost": True}
_QUEUE_OF: dict[str, str] = {}  # task name -> queue, filled by the decorators


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: the queue a task was declared for (task_routes, not the deprecated attribute)."""
    queue = _QUEUE_OF.get(name)
    return {"queue": queue} if queue else None


app.conf.task_routes = (route_task,)


def _register(func, queue: str, options: dict):
    task = app.task(**{**_COMMON, **options})(func)
    _QUEUE_OF[task.name] = queue
    return task


def cpu_task(func=None, **options):
    """Register a task on the CPU queue (imports, statistics, reports)."""
    return _register(func, CPU_QUEUE, options) if func else (lambda f: _register(f, CPU_QUEUE, options))


def gpu_task(func=None, **options):
    """Register a task on the GPU queue (train, embed, index): run its workers with -c 1."""
    return _register(func, GPU_QUEUE, options) if func else (lambda f: _register(f, GPU_QUEUE, options))
