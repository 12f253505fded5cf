"""docker/entrypoint.sh's `worker-gpu` command line (without docker) trains a timm run over Redis + PostgreSQL.

The entrypoint is run as the container runs it (`cbir-entrypoint worker-gpu`, settings from the environment as
docker/compose.yaml gives them: DEBUG off, a SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL), with the
checkout's virtual environment first on PATH in place of the image's Python. The run trains with DataLoader
worker processes, which Celery's prefork pool would refuse ("daemonic processes are not allowed to have
children"): the gpu role's solo pool must let them start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from retrieval.models import ModelRun
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create
from retrieval.tasks import run_execute
from tests.conftest import ROOT, send, wait_until, worker_database_url
from tests.runs.conftest import SMALL, make_phantom_dataset

pytestmark = [
    pytest.mark.ml,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_engine("the container's worker runs on PostgreSQL, as docker/compose.yaml deploys it"),
]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_docker_worker_gpu_trains_a_run_with_dataloader_processes(tmp_path, settings):
    import redis

    assert django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), (
        "this test needs DATABASE_URL on PostgreSQL: run it with `make test-postgres`"
    )
    redis.Redis.from_url(REDIS_URL).flushdb()
    dataset = make_phantom_dataset(tmp_path / "p", n=40, size=96)
    run = run_create(
        dataset=dataset,
        name="docker gpu",
        method="finetune",
        enqueue=False,
        split=split_create(dataset=dataset),
        config={
            **SMALL,
            "task": "binary",
            "positive": ["Cardiomegaly"],
            "undersample": False,
            "epochs": 2,
            "workers": 2,
        },
    )
    assert run.config["workers"] == 2
    log = tmp_path / "worker-gpu.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # the image's `python`
        "DEBUG": "false",
        "SECRET_KEY": "s" * 50,
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "DATA_DIR": str(django_settings.DATA_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTEFACT_ROOT": str(settings.ARTEFACT_ROOT),
    }
    proc = subprocess.Popen(
        ["sh", "docker/entrypoint.sh", "worker-gpu"], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        send(run_execute, REDIS_URL, run_id=run.pk)

        def finished():
            assert proc.poll() is None, log.read_text()[-4000:]
            return ModelRun.objects.get(pk=run.pk).is_finished

        wait_until(finished, timeout=300)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    done = ModelRun.objects.get(pk=run.pk)
    output = log.read_text()
    assert done.status == "succeeded", (done.error, output[-4000:])
    assert "gpu worker: queues gpu, solo pool × 1" in output and "(solo)" in output  # Celery's banner
    assert "daemonic" not in output and "Traceback" not in output
    assert len(done.history) == 2 and done.n_embedded == 40
