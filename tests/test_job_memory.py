"""Issue 15, point 1: a memory limit *during* a task. A cpu worker started as users start it, with
CPU_TASK_MEMORY_LIMIT_MB set: an import that allocates past it ends failed with "the job needed more than N MB",
not killed by the kernel, and the worker goes on with the next job; the same for a run on the solo gpu worker
with GPU_TASK_MEMORY_LIMIT_MB."""

from __future__ import annotations

import pytest

from retrieval.imports import services
from retrieval.models import ImportJob
from retrieval.tasks import import_run
from tests.conftest import send, wait_until
from tests.factories import png_bytes, write_files
from tests.test_job_recovery import SLOW, _redis
from tests.test_worker import ANOTHER_PROCESS, REDIS_URL

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), ANOTHER_PROCESS]

LIMIT_MB = 1000


def test_a_task_over_the_memory_limit_fails_with_a_message_and_the_worker_goes_on(start_worker, tmp_path):
    url = _redis(REDIS_URL)
    env = {
        "PYTHONPATH": SLOW,
        "TEST_JOB_PROGRESS_ALLOCATE_MB": "200",  # per image of a "memory-hog" import: 30 images would be 6 GB
        "CPU_TASK_MEMORY_LIMIT_MB": str(LIMIT_MB),
        "CPU_WORKER_MAX_MEMORY_MB": str(LIMIT_MB - 300),  # a process that ended a task over the limit is replaced
        "CPU_WORKER_CONCURRENCY": "1",
    }
    worker = start_worker(url, roles=("cpu",), env=env)
    dataset = services.dataset_create(name="memory")
    hog = services.import_job_create(
        dataset=dataset,
        source_path=write_files(tmp_path / "memory-hog", {f"{i:02d}.png": png_bytes(i) for i in range(30)}),
        enqueue=False,
    )
    send(import_run, url, job_id=hog.pk)
    wait_until(lambda: ImportJob.objects.get(pk=hog.pk).is_finished, timeout=120, worker=worker)
    hog.refresh_from_db()
    assert hog.status == "failed", (hog.status, hog.error, worker.output()[-3000:])
    assert hog.error.startswith(f"Stopped: the job needed more than {LIMIT_MB:,} MB of memory"), hog.error
    assert hog.n_imported < 30 and hog.workers_lost == 0, worker.output()[-3000:]  # stopped in the task, not killed
    # The worker goes on: the next import runs in a fresh pool process.
    good = services.import_job_create(
        dataset=dataset,
        source_path=write_files(tmp_path / "good", {f"{i}.png": png_bytes(100 + i) for i in range(3)}),
        enqueue=False,
    )
    send(import_run, url, job_id=good.pk)
    wait_until(lambda: ImportJob.objects.get(pk=good.pk).is_finished, timeout=60, worker=worker)
    good.refresh_from_db()
    assert (good.status, good.n_imported) == ("succeeded", 3), (good.error, worker.output()[-3000:])
    assert "Traceback" not in worker.output(), worker.output()[-3000:]


def test_a_task_stuck_in_c_code_over_the_limit_is_failed_by_the_watch_and_its_process_replaced(start_worker, tmp_path):
    """MemoryLimitExceeded cannot be raised while the task is inside one C call: the watch fails the job itself and
    kills the process MEMORY_KILL_AFTER_SECONDS later; the redelivered task finds the job failed, and the worker
    goes on."""
    url = _redis(REDIS_URL)
    env = {
        "PYTHONPATH": SLOW,
        "TEST_JOB_PROGRESS_ALLOCATE_MB": str(LIMIT_MB),  # over the limit at the first image, then stuck in C
        "TEST_JOB_PROGRESS_STUCK": "1",
        "CPU_TASK_MEMORY_LIMIT_MB": str(LIMIT_MB),
        "CPU_WORKER_CONCURRENCY": "1",
    }
    worker = start_worker(url, roles=("cpu",), env=env)
    dataset = services.dataset_create(name="memory")
    hog = services.import_job_create(
        dataset=dataset,
        source_path=write_files(tmp_path / "memory-hog", {f"{i}.png": png_bytes(i) for i in range(3)}),
        enqueue=False,
    )
    send(import_run, url, job_id=hog.pk)
    wait_until(lambda: ImportJob.objects.get(pk=hog.pk).is_finished, timeout=120, worker=worker)
    hog.refresh_from_db()
    assert hog.status == "failed" and hog.error.startswith(f"Stopped: the job needed more than {LIMIT_MB:,} MB"), (
        hog.error,
        worker.output()[-3000:],
    )
    wait_until(lambda: "the task did not stop; killing its process" in worker.output(), timeout=30, worker=worker)
    good = services.import_job_create(
        dataset=dataset, source_path=write_files(tmp_path / "good", {"a.png": png_bytes(100)}), enqueue=False
    )
    send(import_run, url, job_id=good.pk)
    wait_until(lambda: ImportJob.objects.get(pk=good.pk).is_finished, timeout=60, worker=worker)
    assert ImportJob.objects.get(pk=good.pk).status == "succeeded", worker.output()[-3000:]
    assert ImportJob.objects.get(pk=hog.pk).status == "failed"  # the redelivery did not run it again


@pytest.mark.ml
def test_a_run_over_the_gpu_workers_memory_limit_fails_with_a_message_and_the_worker_goes_on(start_worker, tmp_path):
    """The solo gpu worker runs its task in its own process: the watch runs there too (GPU_TASK_MEMORY_LIMIT_MB,
    host memory), the run fails with the message, and the same worker process embeds the next run."""
    from retrieval.models import ModelRun
    from retrieval.runs.services import run_create
    from retrieval.tasks import run_execute
    from tests.runs.conftest import SMALL, make_phantom_dataset

    url = _redis(REDIS_URL)
    limit = 2500  # a gpu worker with torch and a small model holds about 1 GB
    env = {"PYTHONPATH": SLOW, "TEST_JOB_PROGRESS_ALLOCATE_MB": "500", "GPU_TASK_MEMORY_LIMIT_MB": str(limit)}
    worker = start_worker(url, roles=("gpu",), env=env)
    dataset = make_phantom_dataset(tmp_path / "p", n=40, size=64)
    config = {**SMALL, "batch_size": 4}
    hog = run_create(dataset=dataset, name="memory-hog", method="timm", config=config, enqueue=False)
    send(run_execute, url, run_id=hog.pk)
    wait_until(lambda: ModelRun.objects.get(pk=hog.pk).is_finished, timeout=180, worker=worker)
    hog.refresh_from_db()
    assert hog.status == "failed", (hog.status, hog.error, worker.output()[-3000:])
    assert hog.error.startswith(f"Stopped: the job needed more than {limit:,} MB of memory (GPU_TASK_MEMORY_LIMIT_MB")
    assert hog.workers_lost == 0, worker.output()[-3000:]  # stopped in the task, not killed
    good = run_create(dataset=dataset, name="fine", method="timm", config=config, enqueue=False)
    send(run_execute, url, run_id=good.pk)
    wait_until(lambda: ModelRun.objects.get(pk=good.pk).is_finished, timeout=180, worker=worker)
    good.refresh_from_db()
    assert (good.status, good.n_embedded) == ("succeeded", 40), (good.error, worker.output()[-3000:])
    assert worker.exited() is None
