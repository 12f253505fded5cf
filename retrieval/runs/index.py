"""Searching a run's FAISS index: the k most similar images to a collection image or to a query vector
(web process: FAISS and numpy, no torch; the index is cached per process until its file changes)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import faiss
import numpy as np

from core.errors import ApplicationError
from retrieval.ml.index import IDS_FILE, INDEX_FILE, META_FILE, VectorIndex
from retrieval.models import Image, ModelRun
from retrieval.runs import artefacts, ranking

SSIM_SEARCH_POOL = 2000

INDEX_DIR = "index"


# meta.json last: a reader that finds it finds the files it describes (VectorIndex.load checks they agree).
INDEX_FILES = (INDEX_FILE, IDS_FILE, META_FILE)


@lru_cache(maxsize=4)
def _index(folder: str, mtime_ns: int):
    faiss.omp_set_num_threads(1)  # single queries: threads only add contention in a web process
    return VectorIndex.load(folder)


def fetch_index(run: ModelRun) -> Path | None:
    """The local folder of the run's index, brought up to date from the artefact storage (MEDIA_STORAGE=s3:
    one request per file, a download only of what changed); None when the run has no index."""
    folder = ranking.run_artefact_dir(run) / INDEX_DIR
    if artefacts.shared():
        for name in (META_FILE, INDEX_FILE, IDS_FILE):
            if not artefacts.fetch(run, f"{INDEX_DIR}/{name}").is_file():
                return None
    return folder if (folder / META_FILE).exists() else None


def publish_index(run: ModelRun) -> None:
    """Store the index the run's folder holds in the artefact storage (shared storage only)."""
    artefacts.publish(run, *(f"{INDEX_DIR}/{name}" for name in INDEX_FILES))


def run_index(run: ModelRun):
    """The run's FAISS index, loaded from the artefact storage (cached per process until the file changes)."""
    folder = fetch_index(run)
    if folder is None:
        raise ApplicationError(f"Run {run.name!r} has no index yet (status: {run.status}).")
    return _index(str(folder), (folder / META_FILE).stat().st_mtime_ns)


def search_by_vector(*, run: ModelRun, vector: np.ndarray, k: int, exclude: int | None = None) -> list[dict]:
    """Top-k (image id, distance, rank) for a query vector, the query image itself excluded."""
    if not 1 <= k <= 200:
        raise ApplicationError("k must be between 1 and 200.")
    scores, ids = run_index(run).search(
        vector[None, :].astype(np.float32), k, exclude_ids=[exclude if exclude is not None else -1]
    )
    out = []
    for rank, (score, image_id) in enumerate(zip(scores[0], ids[0]), 1):
        if image_id < 0:
            continue
        distance = (
            1.0 - float(score) if run.config.get("metric", "cosine") == "cosine" else float(np.sqrt(max(score, 0)))
        )
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
    """SSIM runs have no index: rank (at most SSIM_SEARCH_POOL) images of the collection directly."""
    pool = list(
        Image.objects.filter(dataset=run.dataset)
        .exclude(pk=image_id)
        .order_by("pk")
        .values_list("pk", flat=True)[:SSIM_SEARCH_POOL]
    )
    neighbours = ranking.ranked_neighbours(pool, ranking.ranker_for(run).rank(image_id, pool), k)
    return [{"image_id": i, "rank": r, "distance": round(d, 6)} for i, r, d in neighbours]
