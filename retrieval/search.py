"""Search: the k most similar images to an image of the collection or to an uploaded one.

A collection image is searched with its stored embedding in the web process (FAISS, no torch).
An uploaded image is decoded and embedded by the worker (`search_execute` task): the web
process never imports torch.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from django.db import transaction

from core.errors import ApplicationError, Conflict
from core.jobs import UNEXPECTED, JobStatus, job_progress, job_retry, job_run
from retrieval import ranking
from retrieval.models import Image, ModelRun, SearchRequest

INDEX_DIR = "index"


@lru_cache(maxsize=4)
def _index(folder: str, mtime_ns: int):
    import faiss

    from retrieval.ml.index import VectorIndex

    faiss.omp_set_num_threads(1)  # single queries: threads only add contention in a web process
    return VectorIndex.load(folder)


def run_index(run: ModelRun):
    """The run's FAISS index (cached per process until the file changes)."""
    folder = ranking.run_artefact_dir(run) / INDEX_DIR
    meta = folder / "meta.json"
    if not meta.exists():
        raise ApplicationError(f"Run {run.name!r} has no index yet (status: {run.status}).")
    return _index(str(folder), meta.stat().st_mtime_ns)


def search_by_vector(*, run: ModelRun, vector: np.ndarray, k: int, exclude: int | None = None) -> list[dict]:
    """Top-k (image id, distance, rank) for a query vector, the query image itself excluded."""
    if not 1 <= k <= 200:
        raise ApplicationError("k must be between 1 and 200.")
    scores, ids = run_index(run).search(vector[None, :].astype(np.float32), k,
                                        exclude_ids=[exclude if exclude is not None else -1])
    out = []
    for rank, (score, image_id) in enumerate(zip(scores[0], ids[0]), 1):
        if image_id < 0:
            continue
        distance = 1.0 - float(score) if run.config.get("metric", "cosine") == "cosine" else float(np.sqrt(max(score, 0)))
        out.append({"image_id": int(image_id), "rank": rank, "distance": round(distance, 6)})
    return out


def search_by_image(*, run: ModelRun, image_id: int, k: int = 10) -> list[dict]:
    """Neighbours of a collection image under a run (its stored embedding; itself excluded)."""
    if run.method == "ssim":
        return _ssim_search(run=run, image_id=image_id, k=k)
    ids, vectors = ranking.run_vectors(run=run)
    where = np.flatnonzero(ids == image_id)
    if not len(where):
        raise ApplicationError(f"Image {image_id} has no embedding in run {run.name!r}.")
    return search_by_vector(run=run, vector=vectors[where[0]], k=k, exclude=image_id)


def _ssim_search(*, run: ModelRun, image_id: int, k: int) -> list[dict]:
    from retrieval.methods import ssim_distances

    pool = list(Image.objects.filter(dataset=run.dataset).exclude(pk=image_id).values_list("pk", flat=True)[:2000])
    d = ssim_distances(query_id=image_id, candidate_ids=pool, config=run.config)
    order = np.argsort(d, kind="stable")[:k]
    return [{"image_id": int(pool[j]), "rank": r, "distance": round(float(d[j]), 6)} for r, j in enumerate(order, 1)]


def search_request_create(*, run: ModelRun, upload_path: Path, k: int, created_by=None,
                          enqueue: bool = True) -> SearchRequest:
    """Record the search for an uploaded query image and queue its embedding on the worker (after commit)."""
    if run.status != JobStatus.SUCCEEDED or run.method == "ssim":
        raise ApplicationError("Upload search needs a finished embedding run.")
    req = SearchRequest.objects.create(run=run, upload_path=str(upload_path), k=k, created_by=created_by)
    if enqueue:
        _search_enqueue(req)
    return req


def search_request_execute(*, search_id: int) -> SearchRequest | None:
    """Worker body: decode + embed the uploaded image, search, store results (core runner: any failure is
    recorded). The upload is removed once the search succeeded or the image proved unreadable; after an
    unexpected failure it is kept, so the search can be retried (`search_request_retry`)."""
    from retrieval.imports.imaging.decode import decode_image
    from retrieval.imports.imaging.errors import ImageDecodeError

    def body(req: SearchRequest) -> None:
        from django.conf import settings

        job_progress(req, done=0, total=2, note="decoding and embedding the image")
        req = SearchRequest.objects.select_related("run").get(pk=req.pk)
        decoded = decode_image(Path(req.upload_path).read_bytes(), max_pixels=settings.IMPORT_MAX_PIXELS)
        vector = embed_pixels(req.run, decoded.pixels)
        job_progress(req, done=1, note="searching the index")
        results = search_by_vector(run=req.run, vector=vector, k=req.k)
        SearchRequest.objects.filter(pk=req.pk).update(results=results, progress_done=2, progress_note="done")

    req = job_run(SearchRequest, search_id, body, expected=(ImageDecodeError,))
    if req is not None and (req.status == JobStatus.SUCCEEDED or not req.error.startswith(UNEXPECTED)):
        Path(req.upload_path).unlink(missing_ok=True)
    return req


def search_request_retry(*, req: SearchRequest, enqueue: bool = True) -> SearchRequest:
    """Queue a failed upload search again (its uploaded image is kept after an unexpected failure)."""
    if not Path(req.upload_path).is_file():
        raise Conflict("The uploaded image of this search is gone: upload it again.")
    req = job_retry(req, what="This search")
    if enqueue:
        _search_enqueue(req)
    return req


def _search_enqueue(req: SearchRequest) -> None:
    from retrieval.tasks import search_execute

    transaction.on_commit(lambda: search_execute.apply_async(kwargs={"search_id": req.pk}))


def embed_pixels(run: ModelRun, pixels: np.ndarray) -> np.ndarray:
    """Embed one decoded image with the run's model (worker or command line only: imports torch).

    IG-CBIR: the second network never sees the image itself. The classifier's saliency map is computed
    first, exactly as for the stored images (same method, / max |value|, 3 channels, float16), then embedded.
    """
    from retrieval.methods import normalised_features
    from retrieval.ml.embed import embed_images
    from retrieval.pipeline import build_transform_for

    model = _model(run.pk, _run_marker(run, "train"))
    if run.method == "igcbir":
        import torch

        from retrieval.pipeline import classifier_saliency_input

        classifier, transform, method = _igcbir_classifier(run.pk, _run_marker(run, "saliency_inputs"))
        maps = classifier_saliency_input(classifier, transform, method, [pixels])
        return embed_images(model, torch.from_numpy(maps.astype(np.float32)), batch_size=1,
                            normalise=normalised_features(run.config))[0]
    transform = build_transform_for(run, model)
    return embed_images(model, [pixels], transform=transform, batch_size=1, normalise=normalised_features(run.config))[0]


def _run_marker(run: ModelRun, stage: str) -> tuple:
    """What a cached network of the run depends on besides its id: when the run was made (an id can
    come back, e.g. in a test database that was rolled back) and when the stage that wrote it ran."""
    return (run.created_at.isoformat() if run.created_at else "", run.timings.get(stage))


@lru_cache(maxsize=2)
def _model(run_id: int, trained_marker):
    from retrieval.pipeline import build_model

    return build_model(ModelRun.objects.get(pk=run_id))


@lru_cache(maxsize=2)
def _igcbir_classifier(run_id: int, saliency_marker):
    """(classifier model, transform, saliency method) of an IG-CBIR run, as its stored inputs were made."""
    from retrieval.pipeline import igcbir_saliency_model

    return igcbir_saliency_model(ModelRun.objects.get(pk=run_id))
