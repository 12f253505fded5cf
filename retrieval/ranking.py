"""Selectors that rank images under a model run: neighbours, farthest, any catalogue.

Numpy only (no torch): the web process and the study builders rank with stored embeddings.
Distances are "lower is closer" for every method: 1 − cosine for cosine runs, Euclidean for
L2 runs, 1 − SSIM for the SSIM baseline.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import ApplicationError
from retrieval.models import ModelRun

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "image_ids.npy"
SALIENCY_DIR = "saliency"


def run_artefact_dir(run: ModelRun) -> Path:
    from django.conf import settings

    return Path(run.artefact_dir) if run.artefact_dir else settings.ARTEFACT_ROOT / "runs" / str(run.pk)


def saliency_path(run: ModelRun, image_id: int) -> Path:
    """Where the saliency overlay PNG of an image under a classifier run is stored."""
    return run_artefact_dir(run) / SALIENCY_DIR / f"{image_id}.png"


def run_vectors(*, run: ModelRun) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, float32 embeddings) of a run; raises ApplicationError when not embedded yet."""
    folder = run_artefact_dir(run)
    emb, ids = folder / EMBEDDINGS_FILE, folder / IDS_FILE
    if not emb.exists() or not ids.exists():
        raise ApplicationError(f"Run {run.name!r} has no embeddings yet (status: {run.status}).")
    return _load(str(ids), ids.stat().st_mtime_ns), _load(str(emb), emb.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> np.ndarray:
    return np.load(path, mmap_mode=None)


def run_metric(run: ModelRun) -> str:
    """The distance a run ranks with: "cosine" (default), "l2" or "ssim"."""
    return run.config.get("metric", "cosine")


def pairwise_distances(query: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Distances from one query vector to each row (lower is closer)."""
    if metric == "l2":
        return np.linalg.norm(vectors - query[None, :], axis=1)
    return 1.0 - vectors @ query


def run_distances(*, run: ModelRun, query_id: int, candidate_ids: list[int]) -> np.ndarray:
    """Distances under the run from a query image to each candidate image, in the given order."""
    if run.method == "ssim":
        from retrieval.methods import ssim_distances

        return ssim_distances(query_id=query_id, candidate_ids=candidate_ids, config=run.config)
    ids, vectors = run_vectors(run=run)
    index = _position_index(ids)
    missing = [i for i in [query_id, *candidate_ids] if i not in index]
    if missing:
        raise ApplicationError(f"Run {run.name!r} has no embedding for image(s) {missing[:5]}.")
    q = vectors[index[query_id]]
    return pairwise_distances(q, vectors[[index[c] for c in candidate_ids]], run_metric(run))


def run_neighbours(*, run: ModelRun, query_id: int, k: int, pool_ids: list[int] | None = None,
                   farthest: bool = False) -> list[tuple[int, int, float]]:
    """The k nearest (or farthest) images to a query under a run, as (image id, rank, distance).

    The query itself is excluded; `pool_ids` restricts the candidates (e.g. one split part).
    Rank 1 is the nearest in the pool, also for the farthest list (ranks count from the near end).
    """
    ids, vectors = run_vectors(run=run)
    index = _position_index(ids)
    if query_id not in index:
        raise ApplicationError(f"Run {run.name!r} has no embedding for image {query_id}.")
    mask = ids != query_id
    if pool_ids is not None:
        mask &= np.isin(ids, np.asarray(pool_ids, dtype=ids.dtype))
    pool = np.flatnonzero(mask)
    d = pairwise_distances(vectors[index[query_id]], vectors[pool], run_metric(run))
    return ranked_neighbours([int(i) for i in ids[pool]], d, k, farthest=farthest)


def ranked_neighbours(ids: list[int], distances: np.ndarray, k: int, *,
                      farthest: bool = False) -> list[tuple[int, int, float]]:
    """The k nearest (or farthest) of `ids` by `distances` as (id, rank, distance); rank 1 = nearest, ties by order."""
    order = np.argsort(distances, kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(1, len(order) + 1)
    chosen = order[::-1][:k] if farthest else order[:k]
    return [(int(ids[j]), int(ranks[j]), float(distances[j])) for j in chosen]


def _position_index(ids: np.ndarray) -> dict[int, int]:
    return {int(i): n for n, i in enumerate(ids)}
