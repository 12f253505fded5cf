"""A real Celery worker process consumes tasks from the embedded broker and from Redis."""

import os
import uuid

import pytest

from readerstudy.models import WorkerPing
from readerstudy.tasks import ping
from retrieval.models import Image, ImportJob
from retrieval.tasks import import_run
from tests.conftest import send, wait_until
from tests.factories import png_bytes, write_files

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ANOTHER_PROCESS = pytest.mark.db_engine(
    "a worker process reads and writes the test database: what it commits must be seen by the test's connection, and "
    "the claim (a compare-and-set UPDATE) must let one of two deliveries run"
)


@pytest.fixture
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # Redis runs on every machine of this project; a failure here is a real failure
    client.flushdb()
    return REDIS_URL


@ANOTHER_PROCESS
def test_task_through_embedded_filesystem_broker(start_worker):
    worker = start_worker("filesystem://localhost/", roles=("cpu",))
    token = uuid.uuid4().hex
    send(ping, "filesystem://localhost/", token=token)
    wait_until(lambda: WorkerPing.objects.filter(token=token).exists(), worker=worker)


@ANOTHER_PROCESS
def test_task_through_redis(start_worker, redis_url):
    worker = start_worker(redis_url, roles=("cpu",))
    token = uuid.uuid4().hex
    send(ping, redis_url, token=token)
    wait_until(lambda: WorkerPing.objects.filter(token=token).exists(), worker=worker)


@ANOTHER_PROCESS
def test_import_runs_on_worker_over_redis_with_progress(start_worker, redis_url, tmp_path, settings):
    from retrieval.imports import services

    dataset = services.dataset_create(name="w")
    src = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(6)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)
    worker = start_worker(redis_url, roles=("cpu",))
    send(import_run, redis_url, job_id=job.pk)
    send(import_run, redis_url, job_id=job.pk)  # delivered twice: the claim lets one run
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, worker=worker)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.n_imported == 6
    assert (job.progress_done, job.progress_total, job.progress_percent) == (6, 6, 100)
    assert Image.objects.filter(dataset=dataset).count() == 6
    assert job.attempts == 1
    wait_until(lambda: "import_run" in worker.output() and worker.output().count("succeeded in") >= 2, worker=worker)
    assert Image.objects.filter(dataset=dataset).count() == 6


def test_tasks_are_routed_to_their_queue_and_acknowledged_late():
    from config.celery import app

    assert app.amqp.router.route({}, import_run.name)["queue"].name == "cpu"
    assert import_run.acks_late and import_run.reject_on_worker_lost
