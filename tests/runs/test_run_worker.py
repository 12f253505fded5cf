"""Runs on a real worker: queued over Redis, and resumed by the next worker, with nobody clicking anything, after
the worker is killed mid-training."""

import os
from pathlib import Path

import pytest

from retrieval.models import ModelRun
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create
from retrieval.tasks import run_execute
from tests.conftest import send, wait_until
from tests.runs.conftest import SMALL, make_phantom_dataset

pytestmark = [
    pytest.mark.ml,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_engine(
        "worker processes and the test share the database: a killed worker's run is taken over through the "
        "stale-heartbeat claim (timestamps compared in SQL) and a duplicated delivery is run once"
    ),
]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_training_resumes_from_its_checkpoint_after_the_worker_is_killed(start_worker, tmp_path):
    dataset = make_phantom_dataset(tmp_path / "p", n=60, size=96)
    run = run_create(
        dataset=dataset,
        name="long",
        method="finetune",
        enqueue=False,
        config={
            **SMALL,
            "task": "binary",
            "positive": ["Cardiomegaly"],
            "undersample": False,
            "epochs": 6,
            "batch_size": 4,
        },
        split=split_create(dataset=dataset),
    )
    worker = start_worker("filesystem://localhost/", roles=("gpu",))
    send(run_execute, "filesystem://localhost/", run_id=run.pk)

    def checkpoint() -> Path:
        return Path(ModelRun.objects.get(pk=run.pk).artefact_dir or "/nonexistent") / "checkpoints" / "last.pt"

    wait_until(
        lambda: len(ModelRun.objects.get(pk=run.pk).history) >= 2 and checkpoint().exists(), timeout=300, worker=worker
    )
    worker.stop("kill")
    killed = ModelRun.objects.get(pk=run.pk)
    assert killed.status == "running" and killed.stage == "training"
    epochs_before = len(killed.history)
    # No resume, no message: the new worker's requeue sends the run again and its claim takes it over.
    second = start_worker("filesystem://localhost/", roles=("gpu",))
    wait_until(lambda: ModelRun.objects.get(pk=run.pk).is_finished, timeout=300, worker=second)
    done = ModelRun.objects.get(pk=run.pk)
    assert done.status == "succeeded", (done.error, worker.output()[-3000:])
    epochs = [h["epoch"] for h in done.history]
    assert epochs == list(range(1, 7)), epochs  # continued after the last checkpoint, not restarted
    assert (done.attempts, done.workers_lost) == (2, 1) and epochs_before >= 2


def test_embed_run_over_redis(start_worker, tmp_path):
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    dataset = make_phantom_dataset(tmp_path / "p", n=20, size=64)
    run = run_create(
        dataset=dataset, name="r", method="timm", config=SMALL, split=split_create(dataset=dataset), enqueue=False
    )
    worker = start_worker(REDIS_URL, roles=("gpu",))
    send(run_execute, REDIS_URL, run_id=run.pk)
    send(run_execute, REDIS_URL, run_id=run.pk)  # duplicated delivery
    wait_until(lambda: ModelRun.objects.get(pk=run.pk).is_finished, timeout=300, worker=worker)
    done = ModelRun.objects.get(pk=run.pk)
    assert done.status == "succeeded", (done.error, worker.output()[-3000:])
    assert done.n_embedded == 20 and done.attempts == 1


def test_a_run_past_its_soft_time_limit_is_stopped_by_the_solo_gpu_worker(start_worker, tmp_path):
    """The solo pool enforces no time limit of Celery's: the gpu task's own alarm stops the run with a message."""
    import redis

    from config.celery import app

    redis.Redis.from_url(REDIS_URL).flushdb()
    dataset = make_phantom_dataset(tmp_path / "p", n=20, size=64)
    config = {**SMALL, "task": "binary", "positive": ["Cardiomegaly"], "undersample": False, "epochs": 200}
    run = run_create(
        dataset=dataset,
        name="endless",
        method="finetune",
        enqueue=False,
        config=config,
        split=split_create(dataset=dataset),
    )
    worker = start_worker(REDIS_URL, roles=("gpu",))
    with app.connection_for_write(REDIS_URL) as conn, conn.Producer() as producer:
        # 10 s: the worker has started and the run is training (200 epochs would take minutes); it is asked to
        # stop at its next progress report
        run_execute.apply_async(kwargs={"run_id": run.pk}, producer=producer, soft_time_limit=10)
    wait_until(lambda: ModelRun.objects.get(pk=run.pk).is_finished, timeout=240, worker=worker)
    done = ModelRun.objects.get(pk=run.pk)
    assert done.status == "failed", done.status
    assert done.error.startswith("Stopped: the job ran longer than the time limit of its queue"), done.error
    assert worker.exited() is None  # the worker lives on for the next run
