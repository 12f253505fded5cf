"""Shared storage (MEDIA_STORAGE=s3): media and run artefacts in an S3-compatible bucket — moto's standalone
server, started by these tests as a separate process (tests/s3.py) — and nothing under the local folders but
each machine's working copies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from core import files
from retrieval.models import Image, ImportJob
from tests.factories import png_bytes, write_files
from tests.importing import run_import
from tests.s3 import s3_storages, start_moto


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    process, server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3(moto, settings, tmp_path):
    """The project's storages pointed at a new private bucket of the S3 server (as the settings make them)."""
    bucket = moto.bucket()
    settings.STORAGES = s3_storages(moto, bucket)
    settings.STORAGE_CACHE_ROOT = tmp_path / "cache"
    return SimpleNamespace(server=moto, bucket=bucket, keys=lambda prefix="": moto.keys(bucket, prefix))


def _local_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --- settings -----------------------------------------------------------------------------------------------------


def _settings_run(code: str, tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIA_STORAGE"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DEBUG": "true", "DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
    )


def test_settings_make_the_s3_storages_from_the_environment(tmp_path):
    server = SimpleNamespace(url="http://minio.internal:9000")
    env = {
        "MEDIA_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": "cbir-media",
        "AWS_S3_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "cbir-test-key",
        "AWS_SECRET_ACCESS_KEY": "cbir-test-secret",
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
    }
    result = _settings_run("import json, config.settings as s; print(json.dumps(s.STORAGES))", tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == s3_storages(server, "cbir-media")
    local = _settings_run("import json, config.settings as s; print(json.dumps(s.STORAGES))", tmp_path)
    assert json.loads(local.stdout)["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_settings_refuse_s3_without_a_bucket_and_unknown_backends(tmp_path):
    result = _settings_run("import config.settings", tmp_path, MEDIA_STORAGE="s3")
    assert result.returncode != 0 and "MEDIA_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME" in result.stderr
    result = _settings_run("import config.settings", tmp_path, MEDIA_STORAGE="nfs")
    assert result.returncode != 0 and "MEDIA_STORAGE must be 'local' or 's3', not 'nfs'" in result.stderr


# --- core.files against the server ----------------------------------------------------------------------------------


def test_local_copies_follow_the_stored_version(s3, tmp_path):
    from django.core.files.storage import default_storage

    files.save_atomic(default_storage, "a/b.bin", b"first")
    target = tmp_path / "copy" / "a" / "b.bin"
    assert files.local_copy(default_storage, "a/b.bin", target).read_bytes() == b"first"
    files.save_atomic(default_storage, "a/b.bin", b"second, longer")  # replaced under the same name
    assert s3.keys("media/") == ["media/a/b.bin"]
    assert files.local_copy(default_storage, "a/b.bin", target).read_bytes() == b"second, longer"
    assert files.local_copy(default_storage, "a/missing.bin", tmp_path / "m") is None
    acl = s3.server.client().get_object_acl(Bucket=s3.bucket, Key="media/a/b.bin")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]  # the owner only: private


# --- imports and the image views ----------------------------------------------------------------------------------


def test_import_stores_every_file_in_the_bucket_and_none_under_media_root(s3, settings, tmp_path, client, coordinator):
    src = write_files(tmp_path / "src", {f"{i}.png": png_bytes(i) for i in range(3)})
    job = run_import(source=src)
    assert job.status == "succeeded" and job.n_imported == 3, job.report
    images = list(Image.objects.order_by("pk"))
    expected = sorted(
        f"media/{getattr(i, kind).name}" for i in images for kind in ("original", "rendition", "thumbnail")
    )
    assert s3.keys() == expected
    assert _local_files(settings.MEDIA_ROOT) == []
    again = run_import(source=src, dataset=job.dataset)  # duplicates are recognised from the bucket's files
    assert again.n_imported == 0 and Image.objects.count() == 3

    client.force_login(coordinator)
    image = images[0]
    response = client.get(f"/images/{image.pk}/rendition/")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == s3.server.get(s3.bucket, f"media/{image.rendition.name}")
    assert response["Cache-Control"] == "private, max-age=86400"
    assert not any(s3.server.url in str(v) or "X-Amz" in str(v) for v in response.headers.values())


def test_a_failed_image_leaves_nothing_in_the_bucket(s3, db, tmp_path, monkeypatch):
    from retrieval.imports import ingest

    def explode(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(ingest.Label.objects, "bulk_create", explode)
    labels = tmp_path / "l.csv"
    labels.write_text("filename,grade\na.png,1\n")
    job = run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1)}), labels=labels)
    assert job.status == "failed" and "database gone" in job.error
    assert Image.objects.count() == 0 and s3.keys() == []


def test_reader_images_come_from_the_bucket_through_the_authorising_view(s3, settings, client, reader, other_reader):
    from annotations import selectors
    from readerstudy.models import Assignment
    from tests.reading.factories import study_make

    study = study_make(readers=[reader], n_cases=2, n_candidates=2)
    assert _local_files(settings.MEDIA_ROOT) == [] and s3.keys("media/datasets/")
    assignment = Assignment.objects.get(study=study, reader=reader)
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=1)
    url = f"/read/{study.pk}/case/1/image/query.png"
    client.force_login(reader)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == s3.server.get(s3.bucket, f"media/{case.query.rendition.name}")
    etag = response["ETag"].strip('"')
    assert response["Cache-Control"] == "private, no-cache"
    pinned = client.get(f"{url}?v={etag}")
    assert pinned["Cache-Control"] == "private, max-age=31536000, immutable"
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"{etag}"').status_code == 304
    client.force_login(other_reader)  # not assigned: the bucket's file is not theirs to see
    assert client.get(url).status_code == 404


# --- model runs: embeddings and index in the bucket, loaded by any machine -----------------------------------------


@pytest.mark.ml
def test_run_stores_embeddings_and_index_in_the_bucket_and_search_loads_them_on_another_machine(
    s3, db, settings, tmp_path
):
    from retrieval.runs import index, ranking
    from retrieval.runs.services import run_add_new_images
    from retrieval.runs.stages import run_execute
    from tests.runs.conftest import SMALL, make_phantom_dataset, run_inline

    dataset = make_phantom_dataset(tmp_path / "phantoms", n=12)
    run = run_inline(dataset, "s3", "timm", None, SMALL)
    prefix = f"artefacts/runs/{run.pk}/"
    assert set(s3.keys(prefix)) >= {
        f"{prefix}{name}"
        for name in ("embeddings.npy", "image_ids.npy", "index/index.faiss", "index/ids.npy", "index/meta.json")
    }
    assert _local_files(settings.MEDIA_ROOT) == []
    assert len(_local_files(settings.STORAGE_CACHE_ROOT / "media")) == 12  # the renditions the DataLoader read
    query = int(Image.objects.order_by("pk").first().pk)
    here = index.search_by_image(run=run, image_id=query, k=5)

    def another_machine(name: str) -> Path:
        """A machine with empty local folders and caches: it has only the database and the bucket."""
        settings.ARTEFACT_ROOT = tmp_path / name
        settings.STORAGE_CACHE_ROOT = tmp_path / f"{name}-cache"
        index._index.cache_clear()
        ranking._load.cache_clear()
        return settings.ARTEFACT_ROOT

    web = another_machine("web")
    assert index.search_by_image(run=run, image_id=query, k=5) == here
    assert (web / "runs" / str(run.pk) / "index" / "index.faiss").is_file()  # loaded from the bucket

    # new images, embedded and indexed by a worker on a third machine, are found by the web machine's search
    more = write_files(tmp_path / "more", {"new-0.png": png_bytes(900, size=128), "new-1.png": png_bytes(901, 128)})
    assert run_import(source=more, dataset=dataset).n_imported == 2
    settings.ARTEFACT_ROOT, web_cache = tmp_path / "worker2", settings.STORAGE_CACHE_ROOT
    run_add_new_images(run=run, enqueue=False)
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.n_embedded == 14, run.error
    settings.ARTEFACT_ROOT, settings.STORAGE_CACHE_ROOT = web, web_cache  # back on the web machine: stale copies
    found = {r["image_id"] for r in index.search_by_image(run=run, image_id=query, k=13)}
    assert set(Image.objects.exclude(pk=query).values_list("pk", flat=True)) == found
    assert json.loads((web / "runs" / str(run.pk) / "index" / "meta.json").read_text())["count"] == 14


@pytest.mark.ml
def test_a_run_embedded_in_shards_on_other_machines_merges_them_through_the_bucket(
    s3, db, settings, tmp_path, monkeypatch
):
    """Shards (core.fanout) run on machines that share only the database and the bucket: each fetches the list
    of images from the bucket and stores its embeddings there; the run, on a third machine, merges them, builds
    the index, and leaves no shard file in the bucket."""
    from core import fanout
    from retrieval.models import EmbedShard, ModelRun
    from retrieval.runs import index, ranking
    from retrieval.runs.services import run_create
    from retrieval.runs.stages import SHARD_DIR, embed_shard_execute, run_execute
    from tests.runs.conftest import SMALL, make_phantom_dataset

    dataset = make_phantom_dataset(tmp_path / "phantoms", n=12)
    settings.EMBED_SHARD_SIZE = 5
    run = run_create(dataset=dataset, name="shards", method="timm", config={**SMALL}, enqueue=False)
    sent: list = []
    monkeypatch.setattr(fanout, "_send", lambda model, pk: sent.append((model, pk)))

    def on(machine: str) -> None:
        settings.ARTEFACT_ROOT = tmp_path / machine
        settings.STORAGE_CACHE_ROOT = tmp_path / f"{machine}-cache"
        index._index.cache_clear()
        ranking._load.cache_clear()

    on("run-machine")
    run_execute(run_id=run.pk)
    prefix = f"artefacts/runs/{run.pk}/{SHARD_DIR}/"
    assert s3.keys(prefix) == [f"{prefix}todo.npy"]
    shards = [pk for model, pk in sent if model is EmbedShard]
    assert len(shards) == 3
    for n, pk in enumerate(shards):
        on(f"gpu-{n}")  # every shard on its own machine
        embed_shard_execute(part_id=pk)
    assert len(s3.keys(prefix)) == 1 + 2 * 3
    on("finishing-machine")
    for model, pk in sent:
        if model is ModelRun:
            run_execute(run_id=pk)
    run.refresh_from_db()
    assert (run.status, run.error, run.n_embedded) == ("succeeded", "", 12)
    ids, vectors = ranking.run_vectors(run=run)
    assert sorted(ids.tolist()) == sorted(Image.objects.values_list("pk", flat=True)) and len(vectors) == 12
    assert s3.keys(prefix) == []
    on("web")
    query = int(ids[0])
    assert len(index.search_by_image(run=run, image_id=query, k=11)) == 11


# --- a worker process configured as a deployment would be ------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.db_engine("a worker process writes the test database: its commits must be seen by the test's connection")
def test_import_on_a_worker_stores_in_the_bucket(s3, start_worker, settings, tmp_path):
    from retrieval.imports import services
    from retrieval.tasks import import_run
    from tests.conftest import send, wait_until

    dataset = services.dataset_create(name="w")
    src = write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(3)})
    job = services.import_job_create(dataset=dataset, source_path=src, enqueue=False)
    worker = start_worker("filesystem://localhost/", roles=("cpu",), env=s3.server.env(s3.bucket))
    send(import_run, "filesystem://localhost/", job_id=job.pk)
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, worker=worker)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.n_imported == 3, job.error
    names = sorted(f"media/{i.rendition.name}" for i in Image.objects.filter(dataset=dataset))
    assert set(names) <= set(s3.keys()) and len(s3.keys()) == 9
    assert _local_files(settings.MEDIA_ROOT) == []


@pytest.mark.ml
def test_trained_weights_and_overlays_reach_another_machine_through_the_bucket(
    s3, db, settings, tmp_path, client, researcher
):
    """A fine-tuned classifier's weights, overlays and embedding map are stored in the bucket; another machine's
    query embedding uses the trained weights (not a fresh network) and its pages serve the overlays."""
    import numpy as np
    from PIL import Image as PILImage

    from readerstudy.selectors import run_has_saliency
    from retrieval.runs import ranking, search_job
    from retrieval.runs.splits import split_create
    from tests.runs.conftest import SMALL, make_phantom_dataset, run_inline

    dataset = make_phantom_dataset(tmp_path / "phantoms", n=24)
    config = {
        **SMALL,
        "task": "binary",
        "positive": ["Cardiomegaly"],
        "negative": ["No Finding"],
        "undersample": False,
        "epochs": 1,
        "saliency": "grad_cam",
        "saliency_max": 3,
    }
    split = split_create(dataset=dataset, name="s", fractions=(0.6, 0.1, 0.3))
    run = run_inline(dataset, "cnn", "finetune", split, config)
    prefix = f"artefacts/runs/{run.pk}/"
    keys = s3.keys(prefix)
    assert f"{prefix}model.safetensors" in keys and f"{prefix}embedding_map.png" in keys
    overlays = [k for k in keys if k.startswith(f"{prefix}saliency/")]
    assert len(overlays) == 3
    ids, vectors = ranking.run_vectors(run=run)
    image = Image.objects.get(pk=int(ids[2]))
    with image.rendition.open("rb") as fh, PILImage.open(fh) as pil:
        pixels = np.asarray(pil)

    settings.ARTEFACT_ROOT = tmp_path / "web"  # another machine: nothing of the run on its disk
    settings.STORAGE_CACHE_ROOT = tmp_path / "web-cache"
    search_job._model.cache_clear()
    assert run_has_saliency(run)  # the studies see the overlays in the bucket
    assert np.allclose(search_job.embed_pixels(run, pixels), vectors[2], atol=1e-4)
    client.force_login(researcher)
    overlay_id = int(overlays[0].rsplit("/", 1)[1].removesuffix(".png"))
    response = client.get(f"/runs/{run.pk}/saliency/{overlay_id}.png")
    assert response.status_code == 200 and b"".join(response.streaming_content) == s3.server.get(s3.bucket, overlays[0])
    response = client.get(f"/runs/{run.pk}/figures/map.png")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == s3.server.get(s3.bucket, f"{prefix}embedding_map.png")


def test_an_import_into_a_missing_bucket_fails_with_the_storage_error_and_stores_nothing(s3, db, settings, tmp_path):
    settings.STORAGES = s3_storages(s3.server, "cbir-no-such-bucket")
    job = run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1), "b.png": png_bytes(2)}))
    assert job.status == "failed" and "NoSuchBucket" in job.error, job.error
    assert Image.objects.count() == 0 and _local_files(settings.MEDIA_ROOT) == []
