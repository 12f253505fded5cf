"""An off-the-shelf embedding run: embed, index, evaluate; re-runnable; incremental add; clear weight errors.

The 60 phantoms are imported once for the module (tests/runs/conftest.py: module_phantoms)."""

import numpy as np
import pytest

from retrieval.models import Image, ModelRun
from retrieval.runs import index, ranking, search_job
from retrieval.runs.services import run_add_new_images, run_create
from retrieval.runs.splits import split_create
from retrieval.runs.stages import run_execute
from tests.runs.conftest import SMALL, make_phantom_dataset

pytestmark = pytest.mark.ml


@pytest.fixture
def phantom_dataset(module_phantoms):
    return module_phantoms


def _run(dataset, name="emb", **cfg):
    run = run_create(
        dataset=dataset,
        name=name,
        method="timm",
        config={**SMALL, **cfg},
        split=split_create(dataset=dataset, name=name, fractions=(0.6, 0.1, 0.3)),
        enqueue=False,
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.db_engine(
    "the run's metrics, history and timings are JSON columns: jsonb on PostgreSQL (no NaN, keys re-ordered), "
    "text on SQLite"
)
def test_embed_index_evaluate(phantom_dataset):
    run = _run(phantom_dataset)
    assert run.status == "succeeded", run.error
    ids, vectors = ranking.run_vectors(run=run)
    assert sorted(ids.tolist()) == sorted(Image.objects.values_list("pk", flat=True))
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert set(run.timings) == {"embed", "index", "evaluate"}
    metrics = run.metrics["retrieval"]
    assert metrics["ap_definition"] == "min_k_R" and "precision@5_random" in metrics and "hubness_index" in metrics
    assert run.metrics["index"]["kind"] == "flat" and run.metrics["index"]["count"] == len(ids)
    assert (ranking.run_artefact_dir(run) / "embedding_map.png").read_bytes()[:4] == b"\x89PNG"


def test_search_excludes_the_query_and_matches_brute_force(phantom_dataset):
    run = _run(phantom_dataset)
    ids, vectors = ranking.run_vectors(run=run)
    q = int(ids[3])
    results = index.search_by_image(run=run, image_id=q, k=5)
    assert q not in [r["image_id"] for r in results] and len(results) == 5
    d = 1 - vectors @ vectors[3]
    d[3] = np.inf
    expected = np.sort(d)[:5]
    assert np.allclose([r["distance"] for r in results], expected, atol=1e-5)


def test_running_twice_does_not_duplicate(phantom_dataset):
    run = _run(phantom_dataset)
    before = ranking.run_vectors(run=run)[1].copy()
    run_execute(run_id=run.pk)  # a redelivered message: the run is finished, nothing happens
    ModelRun.objects.filter(pk=run.pk).update(status="pending")
    run_execute(run_id=run.pk)  # even when re-queued, nothing is embedded twice
    run.refresh_from_db()
    ids, after = ranking.run_vectors(run=run)
    assert len(ids) == len(set(ids.tolist())) == run.n_embedded
    assert np.array_equal(before, after)


def test_new_images_are_added_incrementally(tmp_path, db, django_capture_on_commit_callbacks):
    dataset = make_phantom_dataset(tmp_path / "a", n=30, name="grow")
    run = _run(dataset)
    first = run.n_embedded
    make_phantom_dataset(tmp_path / "b", n=40, seed=99, name="grow")  # more images into the same dataset
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_add_new_images(run=run)
    assert len(callbacks) == 1
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.n_embedded == Image.objects.filter(dataset=dataset).count() > first
    assert run.metrics["index"]["count"] == run.n_embedded


def test_missing_pretrained_weights_fail_with_a_clear_message(phantom_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = _run(phantom_dataset, name="pre", weights="pretrained")
    assert run.status == "failed"
    assert "resnet18" in run.error and "random" in run.error  # says which model and how to proceed
    assert not run.error.startswith("Unexpected")


def test_a_random_weights_run_embeds_an_upload_like_its_own_images(phantom_dataset):
    """`weights: random` is seeded by the run: the process that embeds an uploaded query builds the same
    network as the one that embedded the collection, so an image's upload finds itself at distance ~0."""
    from django.core.files.storage import default_storage
    from PIL import Image as PILImage

    run = _run(phantom_dataset, name="random")
    ids, vectors = ranking.run_vectors(run=run)
    image = Image.objects.get(pk=int(ids[5]))
    with PILImage.open(default_storage.path(image.rendition.name)) as pil:
        pixels = np.asarray(pil)
    search_job._model.cache_clear()  # a fresh process: nothing cached from the run's own embedding
    assert np.allclose(search_job.embed_pixels(run, pixels), vectors[5], atol=1e-4)
