"""Nothing stuck: a job whose worker is lost is finished by the next one, and a job saved while the broker was
unreachable is queued once it is back — without anyone clicking anything (issue 15, points 4 and 5).

The claim (core.jobs.job_claim) records the claiming process; the requeue (core.tasks.jobs_requeue) runs in every
worker. The worker tests start the platform's own workers (core.workers.worker_argv) on Redis and SIGKILL a pool
process, or the whole worker, in the middle of an import; tests/runs/test_run_worker.py kills a training run's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core.errors import BrokerUnavailable
from core.jobs import job_claim, worker_identity
from core.tasks import JOB_KINDS, jobs_requeue
from retrieval.imports import services
from retrieval.models import Image, ImportJob
from retrieval.tasks import import_run
from tests.conftest import client_for, send, wait_until
from tests.factories import png_bytes, write_files, zip_bytes

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens on port 1: the broker is unreachable
SLOW = str(Path(__file__).parent / "fixtures" / "slow_progress")  # sitecustomize: TEST_JOB_PROGRESS_DELAY
ON_COMMIT = pytest.mark.django_db(transaction=True)  # the task is sent when the job's transaction commits


def worker_test(func):
    """A test with real worker processes sharing the test database."""
    for mark in (
        pytest.mark.worker,
        pytest.mark.django_db(transaction=True),
        pytest.mark.db_engine(
            "worker processes and the test share the database: a lost worker's job is taken over by a "
            "compare-and-set claim in another process, and the requeue's sent-mark is a compare-and-set too"
        ),
    ):
        func = mark(func)
    return func


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running_import(tmp_path, *, claimed_by: str, heartbeat_age: float = 0, workers_lost: int = 0) -> ImportJob:
    dataset = services.dataset_create(name=f"d{ImportJob.objects.count()}")
    src = write_files(tmp_path / f"s{ImportJob.objects.count()}", {"a.png": png_bytes(1)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)
    ImportJob.objects.filter(pk=job.pk).update(
        status="running",
        claimed_by=claimed_by,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
        attempts=1,
        workers_lost=workers_lost,
    )
    return job


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_when_the_claiming_process_is_gone(tmp_path, settings):
    settings.JOB_STALE_SECONDS = 300
    host = socket.gethostname()
    # The pool process was SIGKILLed a moment ago: its heartbeat is fresh, but it is gone.
    dead = _running_import(tmp_path, claimed_by=f"{host} {_dead_pid()} 12345")
    assert job_claim(ImportJob, dead.pk)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.workers_lost, dead.claimed_by) == ("running", 2, 1, worker_identity())
    assert dead.progress_note == "resumed after its worker was lost"
    # A live claimant is never taken over, even with a stale heartbeat (a long step without progress).
    live = _running_import(tmp_path, claimed_by=worker_identity(), heartbeat_age=3600)
    assert not job_claim(ImportJob, live.pk)
    # The pid was reused by another process: the recorded start time tells them apart.
    reused = _running_import(tmp_path, claimed_by=f"{host} {os.getpid()} 1")
    assert job_claim(ImportJob, reused.pk)
    # Another host's claimant: only its heartbeat tells.
    fresh = _running_import(tmp_path, claimed_by="elsewhere 4242 99")
    assert not job_claim(ImportJob, fresh.pk)
    stale = _running_import(tmp_path, claimed_by="elsewhere 4242 99", heartbeat_age=301)
    assert job_claim(ImportJob, stale.pk)


@pytest.mark.django_db
def test_a_job_that_loses_its_worker_again_and_again_fails_with_a_message(tmp_path, settings):
    settings.JOB_MAX_WORKER_LOSSES = 3
    job = _running_import(tmp_path, claimed_by=f"{socket.gethostname()} {_dead_pid()} 1", workers_lost=2)
    assert not job_claim(ImportJob, job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("The worker running this job was lost 3 times (killed, out of memory")
    services.import_job_retry(job=job, enqueue=False)  # a user's retry starts the count afresh
    assert ImportJob.objects.get(pk=job.pk).workers_lost == 0


def test_every_task_has_time_limits_and_every_job_kind_a_task(settings):
    from config.celery import app
    from core.tasks import _QUEUE_OF, CPU_QUEUE

    tasks = app.tasks  # every app's tasks module imported
    for name, queue in list(_QUEUE_OF.items()):
        task = tasks[name]
        prefix = "CPU" if queue == CPU_QUEUE else "GPU"
        assert task.soft_time_limit == getattr(settings, f"{prefix}_TASK_SOFT_TIME_LIMIT"), name
        assert task.time_limit == getattr(settings, f"{prefix}_TASK_TIME_LIMIT") > task.soft_time_limit, name
    kinds = {kind.model.__name__ for kind in JOB_KINDS}
    assert kinds == {
        *("ImportJob", "ModelRun", "Evaluation", "SearchRequest", "ReportRun", "WeightsFetch"),
        *("ImportChunk", "EmbedShard"),  # the parts of imports and runs (core.fanout)
    }
    # Redis redelivers an unacknowledged message after this: never while the longest task may still run.
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > max(settings.CPU_TASK_TIME_LIMIT, settings.GPU_TASK_TIME_LIMIT)


def test_the_cpu_worker_replaces_a_pool_process_over_its_memory_limit(monkeypatch):
    from core.workers import worker_argv

    monkeypatch.setenv("CPU_WORKER_MAX_MEMORY_MB", "512")
    argv = worker_argv("cpu")
    assert argv[argv.index("--max-memory-per-child") + 1] == str(512 * 1024)  # Celery counts KiB
    monkeypatch.setenv("CPU_WORKER_MAX_MEMORY_MB", "0")
    assert "--max-memory-per-child" not in worker_argv("cpu")
    assert "--max-memory-per-child" not in worker_argv("gpu")  # the solo pool has no child to replace


@pytest.mark.django_db
def test_the_gpu_task_soft_time_limit_stops_the_job_at_its_next_progress(settings):
    """The solo pool enforces no time limit: gpu tasks arm their own alarm (core.tasks._soft_limit_alarm), which asks
    the job to stop at its next progress report, and raises where the task is once the grace has passed too."""
    import time

    from celery.exceptions import SoftTimeLimitExceeded

    from core.jobs import failure_message, job_progress
    from core.tasks import _soft_limit_alarm

    disarm = _soft_limit_alarm(1, 1)
    assert disarm is not None
    time.sleep(1.2)  # the alarm has rung: nothing is raised in the middle of this (a checkpoint being written)
    with pytest.raises(SoftTimeLimitExceeded):
        job_progress(ImportJob(pk=0), done=1)  # the next progress report stops the job
    with pytest.raises(SoftTimeLimitExceeded):
        try:
            time.sleep(5)  # a job that reports no progress is stopped where it is after the grace
        finally:
            disarm()
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    job_progress(ImportJob(pk=0), done=1)  # disarmed: no stop is left behind for the next task
    assert failure_message(SoftTimeLimitExceeded()).startswith("Stopped: the job ran longer than the time limit")


@pytest.fixture
def unreachable_broker():
    """The Celery application's broker pointed at a closed port, as when Redis is down; restored afterwards."""
    from config.celery import app

    def point(url):
        app.conf.broker_url = url
        app._pool = None  # connections and producers of the previous URL
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    point(CLOSED_PORT)
    yield point
    point(previous)


def _redis(url):
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    client.flushdb()
    return url


@pytest.mark.parametrize("api", [False, True], ids=["page", "api"])
@ON_COMMIT
def test_an_unreachable_broker_answers_503_and_keeps_the_job_pending(
    client, coordinator, unreachable_broker, api, settings
):
    settings.JOB_REQUEUE_GRACE_SECONDS = 0
    dataset = services.dataset_create(name="d")
    archive = zip_bytes({f"{i}.png": png_bytes(i) for i in range(3)})
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("images.zip", archive, content_type="application/zip")
    url = f"/api/datasets/{dataset.pk}/imports/" if api else f"/datasets/{dataset.pk}/import/"
    response = client_for(client, coordinator).post(url, {"archive": upload, "label_format": "generic"})
    assert response.status_code == 503
    message = response.json()["detail"] if api else response.content.decode()
    assert "The task queue (broker) is unreachable" in message and "starts by itself once the queue is back" in message
    job = ImportJob.objects.get()
    assert (job.status, job.enqueued_at) == ("pending", None)
    with pytest.raises(BrokerUnavailable):
        jobs_requeue()  # still down: nothing sent, nothing lost
    assert ImportJob.objects.get().enqueued_at is None


@ON_COMMIT
def test_import_command_names_the_unreachable_broker(tmp_path, unreachable_broker):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    with pytest.raises(CommandError, match=r"The task queue \(broker\) is unreachable"):
        call_command("import_images", "d", str(src), "--no-wait")
    assert ImportJob.objects.get().status == "pending"


def test_kept_database_connections_are_health_checked(tmp_path):
    """With DB_CONN_MAX_AGE > 0 a kept connection is checked before reuse: a killed one costs no 500 (issue 15)."""
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("DB_CONN_MAX_AGE",)}
    env = {**base, "DEBUG": "true", "DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    for age, expected in (("60", "60 True"), ("0", "0 False")):
        out = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); " + code],
            capture_output=True,
            text=True,
            env={**env, "DB_CONN_MAX_AGE": age},
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert out.stdout.strip() == expected, out.stderr


def _assert_stored_once(dataset, n: int) -> None:
    """n images, each once, and the media folder holds exactly the files their rows reference."""
    from django.conf import settings

    images = list(Image.objects.filter(dataset=dataset))
    assert len(images) == n and len({i.content_hash for i in images}) == n
    assert len({i.source_name for i in images}) == n
    media = Path(settings.MEDIA_ROOT)
    referenced = {str(media / f.name) for i in images for f in (i.original, i.rendition, i.thumbnail, i.values) if f}
    on_disk = {str(p) for p in media.rglob("*") if p.is_file()}
    assert on_disk == referenced, sorted(on_disk ^ referenced)


N_IMAGES = 12


def _slow_import(tmp_path):
    dataset = services.dataset_create(name="killed")
    src = write_files(tmp_path / "src", {f"{i:02d}.png": png_bytes(i) for i in range(N_IMAGES)})
    return dataset, services.import_job_create(dataset=dataset, source_path=src, enqueue=False)


SLOW_ENV = {"PYTHONPATH": SLOW, "TEST_JOB_PROGRESS_DELAY": "0.4", "CPU_WORKER_CONCURRENCY": "1"}


@worker_test
@pytest.mark.parametrize("kill", ["pool process", "whole worker"])
def test_an_import_whose_worker_is_killed_finishes_without_anyone(start_worker, tmp_path, kill):
    url = _redis(REDIS_URL)
    dataset, job = _slow_import(tmp_path)
    worker = start_worker(url, roles=("cpu",), env=SLOW_ENV)
    send(import_run, url, job_id=job.pk)
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).progress_done >= 3, worker=worker)
    killed = ImportJob.objects.get(pk=job.pk)
    assert killed.status == "running" and killed.progress_done < N_IMAGES
    if kill == "pool process":
        pid = int(killed.claimed_by.split()[1])
        assert pid in worker.pool_pids()
        os.kill(pid, signal.SIGKILL)  # the worker lives on: Celery redelivers the message at once
        finisher = worker
    else:
        worker.stop("kill")  # the message stays unacknowledged in Redis (for the visibility timeout)
        assert ImportJob.objects.get(pk=job.pk).status == "running"
        finisher = start_worker(url, roles=("cpu",))  # its requeue sends the job again
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=90, worker=finisher)
    done = ImportJob.objects.get(pk=job.pk)
    assert (done.status, done.error) == ("succeeded", ""), finisher.output()[-3000:]
    assert (done.n_imported, done.n_failed, done.n_skipped) == (N_IMAGES, 0, 0)
    assert (done.attempts, done.workers_lost) == (2, 1)
    assert (done.progress_done, done.progress_total) == (N_IMAGES, N_IMAGES)
    _assert_stored_once(dataset, N_IMAGES)


@worker_test
def test_a_job_saved_while_the_broker_was_down_runs_once_it_is_back(start_worker, tmp_path, unreachable_broker):
    dataset = services.dataset_create(name="outbox")
    src = write_files(tmp_path / "src", {f"{i}.png": png_bytes(i) for i in range(3)})
    with pytest.raises(BrokerUnavailable):
        services.import_job_create(dataset=dataset, source_path=src)
    job = ImportJob.objects.get()
    assert (job.status, job.enqueued_at) == ("pending", None)
    url = _redis(REDIS_URL)
    unreachable_broker(url)  # the broker is back
    worker = start_worker(url, roles=("cpu",))
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=60, worker=worker)
    done = ImportJob.objects.get(pk=job.pk)
    assert (done.status, done.n_imported, done.attempts) == ("succeeded", 3, 1)
    assert done.enqueued_at is not None  # sent by the worker's requeue: nothing else sent it
    _assert_stored_once(dataset, 3)


@ON_COMMIT
def test_a_run_created_while_the_broker_is_down_is_pending_and_can_be_resumed(
    client, coordinator, tmp_path, unreachable_broker
):
    from retrieval.imports.ingest import import_job_run
    from retrieval.models import ModelRun

    dataset = services.dataset_create(name="d")
    src = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(3)})
    import_job_run(job_id=services.import_job_create(dataset=dataset, source_path=src, enqueue=False).pk)
    api = client_for(client, coordinator)
    body = {"name": "r", "method": "timm", "config": {"backbone": "resnet18", "weights": "random"}}
    response = api.post(f"/api/datasets/{dataset.pk}/runs/create/", body, content_type="application/json")
    assert response.status_code == 503, response.content
    assert "Model run" in response.json()["detail"] and "is saved as pending" in response.json()["detail"]
    run = ModelRun.objects.get()
    assert (run.status, run.enqueued_at) == ("pending", None)
    response = api.post(f"/api/runs/{run.pk}/resume/")  # still down: the same answer, nothing lost
    assert response.status_code == 503 and ModelRun.objects.get().status == "pending"
    unreachable_broker(_redis(REDIS_URL))  # back: resuming a pending run sends it again
    assert api.post(f"/api/runs/{run.pk}/resume/").status_code in (200, 202)
    run.refresh_from_db()
    assert run.status == "pending" and run.enqueued_at is not None


@pytest.mark.django_db
def test_the_import_page_says_why_an_import_waits(client, coordinator, tmp_path, settings):
    job = _running_import(tmp_path, claimed_by="elsewhere 1 1", heartbeat_age=settings.JOB_STALE_SECONDS + 5)
    page = client_for(client, coordinator).get(f"/imports/{job.pk}/").content.decode()
    assert 'id="worker-lost"' in page and "resumes the import by itself" in page
    ImportJob.objects.filter(pk=job.pk).update(status="pending", enqueued_at=None)
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert 'id="waiting-for-broker"' in page and "starts by itself once the queue is back" in page


@pytest.mark.django_db
def test_a_soft_limit_outside_the_runner_fails_the_job_too(tmp_path, monkeypatch):
    """The limit may strike before the job is claimed (a gpu task's modules loading on a busy machine)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from core.tasks import JobFailed
    from retrieval.imports import uploads

    dataset = services.dataset_create(name="d")
    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)

    def stopped():
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(uploads, "uploads_expired_remove", stopped)  # runs before the claim
    with pytest.raises(JobFailed, match="Stopped: the job ran longer than the time limit"):
        import_run(job_id=job.pk)
    assert ImportJob.objects.get(pk=job.pk).status == "failed"
