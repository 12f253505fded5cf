"""An import in chunks on real worker processes, started as users start them (`manage.py worker cpu`), over Redis:
two workers give what one gives, and a worker killed in the middle of a chunk loses and duplicates nothing
(core.fanout; issue 13, point 1). tests/test_import_chunks.py compares the chunks with the import in one task.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings as django_settings

from retrieval.imports import services
from retrieval.models import Image, ImportChunk, ImportJob
from retrieval.tasks import import_run
from tests.conftest import send, wait_until
from tests.factories import png_bytes, write_files
from tests.test_import_chunks import outcome
from tests.test_job_recovery import SLOW, _redis, worker_test

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
N = 30
CHUNKS = {"IMPORT_CHUNK_SIZE": "4", "CPU_WORKER_CONCURRENCY": "1"}


def _collection(tmp_path):
    files = {f"{i:02d}.png": png_bytes(i, size=48) for i in range(N)}
    files["29-copy.png"] = png_bytes(2, size=48)  # the content of a file of the first chunk, in the last one
    return write_files(tmp_path / "src", files)


def _assert_stored_once(dataset, n: int) -> None:
    """n images, each once, and the dataset's media folder holds exactly the files their rows reference."""
    images = list(Image.objects.filter(dataset=dataset))
    assert len(images) == n and len({i.content_hash for i in images}) == n
    assert len({i.source_name for i in images}) == n
    media = Path(django_settings.MEDIA_ROOT)
    referenced = {str(media / f.name) for i in images for f in (i.original, i.rendition, i.thumbnail, i.values) if f}
    on_disk = {str(p) for p in (media / "datasets" / str(dataset.pk)).rglob("*") if p.is_file()}
    assert on_disk == referenced, sorted(on_disk ^ referenced)


def _import(url, dataset, source, workers) -> ImportJob:
    job = services.import_job_create(dataset=dataset, source_path=source, enqueue=False)
    send(import_run, url, job_id=job.pk)
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=120, worker=workers[0])
    return ImportJob.objects.get(pk=job.pk)


@worker_test
def test_two_workers_import_a_collection_in_chunks_as_one_worker_does(start_worker, tmp_path, settings):
    settings.IMPORT_CHUNK_SIZE = 4
    url = _redis(REDIS_URL)
    source = _collection(tmp_path)
    one, two = services.dataset_create(name="one"), services.dataset_create(name="two")
    two.pseudonym_key = one.pseudonym_key
    two.save()
    first = start_worker(url, roles=("cpu",), env=CHUNKS)
    alone = _import(url, one, source, [first])
    second = start_worker(url, roles=("cpu",), env=CHUNKS)
    wait_until(lambda: "ready" in second.output(), worker=second)
    together = _import(url, two, source, [first, second])
    assert (alone.status, alone.error, alone.n_imported, alone.n_skipped) == ("succeeded", "", N, 1)
    assert ImportChunk.objects.filter(parent=together).count() == 8  # 31 files in chunks of 4
    assert outcome(together) == outcome(alone)
    # Both workers imported chunks of the second import.
    chunk_runs = [w.output().count("retrieval.tasks.import_chunk") for w in (first, second)]
    assert all(chunk_runs), chunk_runs
    _assert_stored_once(two, N)


@worker_test
def test_a_worker_killed_in_the_middle_of_a_chunk_loses_and_duplicates_nothing(start_worker, tmp_path, settings):
    settings.IMPORT_CHUNK_SIZE = 4
    url = _redis(REDIS_URL)
    dataset = services.dataset_create(name="killed")
    source = _collection(tmp_path)
    slow = {**CHUNKS, "PYTHONPATH": SLOW, "TEST_JOB_PROGRESS_DELAY": "0.3"}
    victim = start_worker(url, roles=("cpu",), env=slow)
    survivor = start_worker(url, roles=("cpu",), env=slow)
    job = services.import_job_create(dataset=dataset, source_path=source, enqueue=False)
    send(import_run, url, job_id=job.pk)

    def victim_in_a_chunk():
        pids = set(victim.pool_pids())
        return next(
            (
                c
                for c in ImportChunk.objects.filter(parent=job, status="running", progress_done__gte=1)
                if c.claimed_by and int(c.claimed_by.split()[1]) in pids
            ),
            None,
        )

    chunk = wait_until(victim_in_a_chunk, timeout=60, worker=victim)
    victim.stop("kill")  # the whole worker: its chunk's message stays unacknowledged, its claimant is gone
    assert ImportChunk.objects.get(pk=chunk.pk).status == "running"
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, timeout=120, worker=survivor)
    done = ImportJob.objects.get(pk=job.pk)
    assert (done.status, done.error) == ("succeeded", ""), survivor.output()[-3000:]
    assert (done.n_imported, done.n_skipped, done.n_failed) == (N, 1, 0)
    assert (done.progress_done, done.progress_total) == (N + 1, N + 1)
    redone = ImportChunk.objects.get(pk=chunk.pk)
    assert (redone.status, redone.workers_lost, redone.attempts) == ("succeeded", 1, 2)
    assert Image.objects.filter(dataset=dataset).count() == N
    _assert_stored_once(dataset, N)
