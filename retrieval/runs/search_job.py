"""The worker's body of an upload search: decode, embed with the run's network, search the index
(worker only: imports torch). Networks are cached per worker process, keyed by the run and its stages."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from django.conf import settings

from core.jobs import UNEXPECTED, JobStatus, job_progress, job_run
from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError
from retrieval.ml.embed import embed_images
from retrieval.models import ModelRun, SearchRequest
from retrieval.runs.index import search_by_vector
from retrieval.runs.methods import normalised_features
from retrieval.runs.networks import build_model, build_transform_for, classifier_saliency_input, igcbir_saliency_model


def search_request_execute(*, search_id: int) -> SearchRequest | None:
    """Worker body: decode + embed the uploaded image, search, store results (core runner: any failure is
    recorded). The upload is removed once the search succeeded or the image proved unreadable; after an
    unexpected failure it is kept, so the search can be retried (`search_request_retry`)."""

    def body(req: SearchRequest) -> None:
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


def embed_pixels(run: ModelRun, pixels: np.ndarray) -> np.ndarray:
    """Embed one decoded image with the run's model (worker or command line only: imports torch).

    IG-CBIR: the second network never sees the image itself. The classifier's saliency map is computed
    first, exactly as for the stored images (same method, / max |value|, 3 channels, float16), then embedded.
    """
    model = _model(run.pk, _run_marker(run, "train"))
    if run.method == "igcbir":
        classifier, transform, method = _igcbir_classifier(run.pk, _run_marker(run, "saliency_inputs"))
        maps = classifier_saliency_input(classifier, transform, method, [pixels])
        return embed_images(
            model, torch.from_numpy(maps.astype(np.float32)), batch_size=1, normalise=normalised_features(run.config)
        )[0]
    transform = build_transform_for(run, model)
    return embed_images(model, [pixels], transform=transform, batch_size=1, normalise=normalised_features(run.config))[
        0
    ]


def _run_marker(run: ModelRun, stage: str) -> tuple:
    """What a cached network of the run depends on besides its id: when the run was made (an id can
    come back, e.g. in a test database that was rolled back) and when the stage that wrote it ran."""
    return (run.created_at.isoformat() if run.created_at else "", run.timings.get(stage))


@lru_cache(maxsize=2)
def _model(run_id: int, trained_marker):
    return build_model(ModelRun.objects.get(pk=run_id))


@lru_cache(maxsize=2)
def _igcbir_classifier(run_id: int, saliency_marker):
    """(classifier model, transform, saliency method) of an IG-CBIR run, as its stored inputs were made."""
    return igcbir_saliency_model(ModelRun.objects.get(pk=run_id))
