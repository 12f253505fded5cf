"""Run pages, search page and run/search API: roles, forms, results (embeddings written directly)."""

import numpy as np
import pytest

from retrieval.models import Image, ModelRun
from retrieval.runs.splits import split_create
from tests.factories import png_bytes, write_files
from tests.importing import run_import


@pytest.fixture
def finished_run(db, tmp_path, settings):
    """A succeeded run whose embeddings and FAISS index are written here (no torch needed)."""
    from retrieval.ml.index import VectorIndex

    job = run_import(source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(12)}), name="web")
    ids = np.array(sorted(Image.objects.values_list("pk", flat=True)), dtype=np.int64)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    folder = settings.ARTEFACT_ROOT / "r"
    folder.mkdir(parents=True)
    np.save(folder / "embeddings.npy", vectors)
    np.save(folder / "image_ids.npy", ids)
    VectorIndex.build(vectors, ids).save(folder / "index")
    run = ModelRun.objects.create(
        dataset=job.dataset,
        name="fake",
        method="timm",
        status="succeeded",
        config={"metric": "cosine"},
        artefact_dir=str(folder),
        n_embedded=len(ids),
        split=split_create(dataset=job.dataset),
        metrics={
            "retrieval": {
                "n_queries": 3,
                "part": "test",
                "labels": [],
                "ap_definition": "min_k_R",
                "precision@1": 0.5,
                "precision@1_random": 0.2,
                "precision@1_t": 2.0,
                "precision@1_p": 0.04,
            }
        },
    )
    run.vectors, run.ids = vectors, ids
    return run


def test_pages_for_each_role(client, finished_run, coordinator, researcher, reader):
    image = int(finished_run.ids[0])
    urls = [
        f"/datasets/{finished_run.dataset_id}/runs/",
        f"/datasets/{finished_run.dataset_id}/runs/new/",
        f"/runs/{finished_run.pk}/",
        f"/runs/{finished_run.pk}/search/?image={image}",
        f"/api/datasets/{finished_run.dataset_id}/runs/",
        f"/api/runs/{finished_run.pk}/",
        f"/api/runs/{finished_run.pk}/search/?image={image}&k=3",
    ]
    for url in urls:
        assert client.get(url).status_code in (302, 401, 403), url
    client.force_login(reader)
    for url in urls:
        assert client.get(url).status_code == 403, url
    for persona in (coordinator, researcher):
        client.force_login(persona)
        for url in urls:
            expected = 403 if persona == researcher and url.endswith("/runs/new/") else 200  # coordinators' work
            assert client.get(url).status_code == expected, url


def test_run_page_shows_metrics_beside_random(client, finished_run, researcher):
    client.force_login(researcher)
    html = client.get(f"/runs/{finished_run.pk}/").content.decode()
    assert "precision@1" in html and "0.500" in html and "0.200" in html and "0.0400" in html


def test_search_page_lists_neighbours_without_the_query(client, finished_run, researcher):
    client.force_login(researcher)
    query = int(finished_run.ids[2])
    html = client.get(f"/runs/{finished_run.pk}/search/?image={query}&k=4").content.decode()
    assert html.count("distance") == 4
    d = 1 - finished_run.vectors @ finished_run.vectors[2]
    d[2] = np.inf
    nearest = int(finished_run.ids[int(np.argmin(d))])
    assert f"/images/{nearest}/thumbnail/" in html.split("#1 ·")[0].rsplit("<li>", 1)[-1]


def test_search_api_returns_ranked_results(client, finished_run, coordinator):
    client.force_login(coordinator)
    query = int(finished_run.ids[0])
    data = client.get(f"/api/runs/{finished_run.pk}/search/?image={query}&k=5").json()
    assert [r["rank"] for r in data] == [1, 2, 3, 4, 5]
    assert query not in [r["image_id"] for r in data]
    assert all(a["distance"] <= b["distance"] for a, b in zip(data, data[1:]))
    assert client.get(f"/api/runs/{finished_run.pk}/search/?image=abc").status_code == 400
    assert client.get(f"/api/runs/{finished_run.pk}/search/?image={query}&k=0").status_code == 400


def test_upload_search_runs_on_the_worker_and_removes_the_upload(
    client, finished_run, coordinator, django_capture_on_commit_callbacks, monkeypatch
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from retrieval.models import SearchRequest
    from retrieval.runs import search_job

    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            f"/runs/{finished_run.pk}/search/", {"file": SimpleUploadedFile("q.png", png_bytes(3)), "k": 3}
        )
    req = SearchRequest.objects.get()
    assert response.status_code == 302 and len(callbacks) == 1
    # the worker's body, with the model's embedding replaced by a stored vector (no torch in this test)
    monkeypatch.setattr(search_job, "embed_pixels", lambda run, pixels: finished_run.vectors[5])
    search_job.search_request_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "succeeded" and req.results[0]["image_id"] == int(finished_run.ids[5])
    assert not __import__("pathlib").Path(req.upload_path).exists()
    assert "#1 ·" in client.get(f"/searches/{req.pk}/").content.decode()


def test_corrupt_upload_fails_the_search_with_a_message(
    client, finished_run, coordinator, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from retrieval.models import SearchRequest
    from retrieval.runs import search_job

    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            f"/runs/{finished_run.pk}/search/", {"file": SimpleUploadedFile("q.png", b"\x89PNG broken"), "k": 3}
        )
    req = SearchRequest.objects.get()
    search_job.search_request_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "failed" and req.error
    assert req.error in client.get(f"/searches/{req.pk}/").content.decode()


def test_run_form_refuses_binary_training_without_positive(client, finished_run, coordinator):
    client.force_login(coordinator)
    response = client.post(
        f"/datasets/{finished_run.dataset_id}/runs/new/",
        {
            "name": "x",
            "method": "finetune",
            "backbone": "resnet18",
            "weights": "random",
            "metric": "cosine",
            "task": "binary",
            "epochs": 1,
            "lr": 0.001,
            "batch_size": 8,
        },
    )
    assert response.status_code == 200 and "needs at least one positive label" in response.content.decode()
    assert not ModelRun.objects.filter(name="x").exists()


def test_run_form_queues_a_run(client, finished_run, coordinator, django_capture_on_commit_callbacks):
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            f"/datasets/{finished_run.dataset_id}/runs/new/",
            {
                "name": "new",
                "method": "timm",
                "backbone": "resnet18",
                "weights": "random",
                "metric": "l2",
                "epochs": 1,
                "lr": 0.001,
                "batch_size": 8,
            },
        )
    run = ModelRun.objects.get(name="new")
    assert response.status_code == 302 and len(callbacks) == 1
    assert run.config["metric"] == "l2" and run.split is not None and run.status == "pending"


def test_resume_refuses_a_finished_run(client, finished_run, coordinator):
    client.force_login(coordinator)
    response = client.post(f"/api/runs/{finished_run.pk}/resume/")
    assert response.status_code == 409 and "only failed" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)  # the task is sent when the search's transaction commits
def test_upload_search_with_the_broker_down_answers_503_and_runs_once_it_is_back(
    client, finished_run, coordinator, settings
):
    """Issue 15, point 5, on the search-by-upload page: a clear 503, the search kept pending with its upload, and
    sent by the requeue once the broker is back."""
    from pathlib import Path

    import redis
    from django.core.files.uploadedfile import SimpleUploadedFile

    from config.celery import app
    from core.tasks import jobs_requeue
    from retrieval.models import SearchRequest
    from tests.test_job_recovery import CLOSED_PORT
    from tests.test_worker import REDIS_URL

    def point(url):
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    client.force_login(coordinator)
    point(CLOSED_PORT)
    try:
        response = client.post(
            f"/runs/{finished_run.pk}/search/", {"file": SimpleUploadedFile("q.png", png_bytes(3)), "k": 3}
        )
        assert response.status_code == 503, response.content[:500]
        assert "The task queue (broker) is unreachable" in response.content.decode()
        req = SearchRequest.objects.get()
        assert (req.status, req.enqueued_at) == ("pending", None) and Path(req.upload_path).is_file()
        redis.Redis.from_url(REDIS_URL).flushdb()
        point(REDIS_URL)  # back: the worker's requeue sends it
        settings.JOB_REQUEUE_GRACE_SECONDS = 0
        jobs_requeue()
        assert SearchRequest.objects.get(pk=req.pk).enqueued_at is not None
    finally:
        point(previous)
