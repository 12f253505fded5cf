"""The one definition of a Celery worker of this platform: `worker_argv(role)`.

Everything that starts a worker builds its command line here: `manage.py worker <role>` (the
docs/install.md#workers and `docker/entrypoint.sh`), `manage.py demo` and the tests' worker fixture. Nothing
else spells out queues, pools or concurrency.

Two roles, one per queue, each with the pool its work needs:

- **gpu** (train, embed, index, evaluate a model run): the *solo* pool, one task at a time in
  the worker's own main process. That process is not daemonic, so a run's torch DataLoader may
  start its worker processes (decoding and augmenting images beside the forward pass); under
  Celery's default prefork pool the task runs in a daemonic child, and Python refuses to let a
  daemonic process have children ("daemonic processes are not allowed to have children"). One
  long-lived process also owns the CUDA context: nothing is forked after CUDA is initialised.
  The GPU queue wants one task at a time anyway (a second training run would only fight for
  the same GPU memory); for more throughput, start one gpu worker per GPU.
- **cpu** (imports, re-evaluations, upload searches, reports): the *prefork* pool with one
  child per core (CPU_WORKER_CONCURRENCY), so an import and a report run side by side and a
  crashed child does not take the worker down. These tasks start no DataLoader processes.

The cpu worker replaces a pool process whose resident memory exceeds CPU_WORKER_MAX_MEMORY_MB
(default 2048; 0: never) once its task has ended (`--max-memory-per-child`): a leak or a large
import does not keep its memory for the next job. *During* a task, CPU_TASK_MEMORY_LIMIT_MB bounds it
(core.tasks: a watch thread in each pool process stops a task that passes it, and its job fails with a
message). Time limits are the tasks' own (core.tasks).

Every worker also runs the requeue (core.tasks.requeue_loop_start, started from config.celery when
the worker is ready): pending jobs whose task never reached the broker and jobs of a lost worker are
sent again, so neither a broker outage nor a killed worker needs anyone to click anything.

Common to both: prefetch 1 (CELERY_WORKER_PREFETCH_MULTIPLIER in the settings; with acks_late a
long job never holds a second message hostage), and no gossip, mingle or event heartbeats: the
platform tracks every job in its own tables (status, progress, heartbeat_at), uses no remote
control or Flower, and the embedded filesystem broker has no fan-out exchange for them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from core.env import envint, envstr


@dataclass(frozen=True)
class WorkerRole:
    queues: tuple[str, ...]
    pool: str
    concurrency: int
    why: str
    max_memory_mb: int = 0  # --max-memory-per-child (prefork only; 0: none)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_roles() -> dict[str, WorkerRole]:
    """The roles with their settings, read from the environment when a worker is started."""
    return {
        "cpu": WorkerRole(
            queues=("cpu",),
            pool="prefork",
            concurrency=envint("CPU_WORKER_CONCURRENCY", max(2, _cores()), minimum=1),
            why="imports, re-evaluations, upload searches and reports, side by side",
            max_memory_mb=envint("CPU_WORKER_MAX_MEMORY_MB", 2048, minimum=0),
        ),
        "gpu": WorkerRole(
            queues=("gpu",),
            pool="solo",
            concurrency=1,
            why="training, embedding and indexing, one run at a time; DataLoader processes allowed",
        ),
    }


ROLES = ("cpu", "gpu")


def worker_argv(role: str, *, name: str | None = None, loglevel: str | None = None) -> list[str]:
    """The command line of a worker of `role` ('cpu' or 'gpu'), as every launcher runs it."""
    spec = worker_roles().get(role)
    if spec is None:
        raise ValueError(f"unknown worker role {role!r}: use one of {', '.join(ROLES)}")
    memory = ["--max-memory-per-child", str(spec.max_memory_mb * 1024)] if spec.max_memory_mb else []  # in KiB
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--queues",
        ",".join(spec.queues),
        "--pool",
        spec.pool,
        "--concurrency",
        str(spec.concurrency),
        *memory,
        "--hostname",
        name or f"{role}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        loglevel or envstr("LOG_LEVEL", "INFO"),
    ]
