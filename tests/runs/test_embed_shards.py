"""A run embeds its images in shards (core.fanout; retrieval.runs.stages): the same embeddings as in one task, the
index built once all shards are in, nothing twice (issue 13, point 2). The shards' tasks run here as a worker
calls them, the last shard first; the worker test kills a real worker in the middle of a shard.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from core import fanout
from retrieval.models import EmbedShard, Image, ModelRun
from retrieval.runs import ranking
from retrieval.runs.services import run_create
from retrieval.runs.stages import SHARD_DIR, embed_shard_execute, run_execute
from retrieval.tasks import run_execute as run_task
from tests.conftest import send, wait_until
from tests.runs.conftest import SMALL, make_phantom_dataset
from tests.test_job_recovery import SLOW, _redis, worker_test

pytestmark = pytest.mark.ml
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _run(dataset, name):
    return run_create(dataset=dataset, name=name, method="timm", config={**SMALL}, enqueue=False)


def _sharded(run: ModelRun, monkeypatch) -> ModelRun:
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))
    run_execute(run_id=run.pk)
    while sent:
        shards = [pk for model, pk in sent if model is EmbedShard]
        runs = [pk for model, pk in sent if model is ModelRun]
        sent.clear()
        for pk in reversed(shards):
            embed_shard_execute(part_id=pk)
        for pk in runs:
            run_execute(run_id=pk)
    run.refresh_from_db()
    return run


def _by_id(run: ModelRun) -> dict[int, np.ndarray]:
    ids, vectors = ranking.run_vectors(run=run)
    assert len(set(ids.tolist())) == len(ids), "an image embedded twice"
    return dict(zip(ids.tolist(), vectors))


def test_a_run_embedded_in_shards_has_the_embeddings_of_one_task(module_phantoms, settings, monkeypatch):
    whole = _run(module_phantoms, "whole")
    run_execute(run_id=whole.pk)
    whole.refresh_from_db()
    settings.EMBED_SHARD_SIZE = 25
    sharded = _sharded(_run(module_phantoms, "sharded"), monkeypatch)
    assert (sharded.status, sharded.error, sharded.stage) == ("succeeded", "", "done")
    assert EmbedShard.objects.filter(parent=sharded).count() == 3  # 60 images, shards of at most 25
    expected, got = _by_id(whole), _by_id(sharded)
    assert sorted(got) == sorted(expected) == sorted(Image.objects.values_list("pk", flat=True))
    assert all(np.allclose(got[i], expected[i], atol=1e-5) for i in expected)
    assert sharded.n_embedded == 60 and sharded.metrics["index"]["count"] == 60
    assert (sharded.progress_done, sharded.progress_total) == (60, 60)
    assert not (ranking.run_artefact_dir(sharded) / SHARD_DIR).exists()
    assert {"embed", "embed_shards", "index"} <= set(sharded.timings)
    # Run again (new images, say): the merge, were it redone, adds nothing twice.
    ModelRun.objects.filter(pk=sharded.pk).update(status="pending")
    run_execute(run_id=sharded.pk)
    assert len(_by_id(sharded)) == 60


@worker_test
def test_a_gpu_worker_killed_in_the_middle_of_a_shard_loses_and_duplicates_nothing(start_worker, tmp_path, settings):
    dataset = make_phantom_dataset(tmp_path / "p", n=24, size=64)
    run = run_create(dataset=dataset, name="killed", method="timm", config={**SMALL, "batch_size": 4}, enqueue=False)
    url = _redis(REDIS_URL)
    env = {"EMBED_SHARD_SIZE": "8", "PYTHONPATH": SLOW, "TEST_JOB_PROGRESS_DELAY": "0.5"}
    victim = start_worker(url, roles=("gpu",), env=env)
    survivor = start_worker(url, roles=("gpu",), env=env)
    send(run_task, url, run_id=run.pk)

    def victim_in_a_shard():
        pid = victim.procs[0].pid  # the solo pool runs its task in the worker's own process
        return EmbedShard.objects.filter(
            parent=run, status="running", progress_done__gte=1, claimed_by__contains=f" {pid} "
        ).first()

    shard = wait_until(victim_in_a_shard, timeout=120, worker=victim)
    victim.stop("kill")
    wait_until(lambda: ModelRun.objects.get(pk=run.pk).is_finished, timeout=120, worker=survivor)
    run.refresh_from_db()
    assert (run.status, run.error) == ("succeeded", ""), survivor.output()[-3000:]
    redone = EmbedShard.objects.get(pk=shard.pk)
    assert (redone.status, redone.workers_lost) == ("succeeded", 1)
    assert EmbedShard.objects.filter(parent=run).count() == 3
    ids = sorted(_by_id(run))
    assert ids == sorted(Image.objects.filter(dataset=dataset).values_list("pk", flat=True))
    assert run.metrics["index"]["count"] == 24 and run.n_embedded == 24
