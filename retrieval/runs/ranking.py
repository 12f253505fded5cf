"""How a run ranks images: one ranker per method, chosen in one place (`ranker_for`), and where a run's
embeddings and overlays are kept.

Numpy only (no torch): the web process, the study builders, the evaluation and the reports rank with
stored embeddings. Distances are "lower is closer" for every method: 1 − cosine for cosine runs,
Euclidean for L2 runs (retrieval.ml.metrics.pairwise_distances, the one distance helper), 1 − SSIM
for the SSIM baseline (retrieval.ml.ssim, on each image's greyscale rendition resized to config size).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image as PILImage

from core.errors import ApplicationError
from retrieval.ml.metrics import pairwise_distances
from retrieval.ml.ssim import prepare, ssim_distance
from retrieval.models import Image, ModelRun
from retrieval.runs import artefacts

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "image_ids.npy"
SALIENCY_DIR = "saliency"
SSIM_FILE = "ssim_distances.npz"  # an SSIM run's pairwise matrix of the evaluated images (SsimRanker.matrix)


def run_artefact_dir(run: ModelRun) -> Path:
    """The run's folder on this machine (retrieval.runs.artefacts: with a shared storage, a working copy)."""
    return artefacts.run_folder(run)


def saliency_name(image_id: int) -> str:
    """The saliency overlay PNG of an image under a classifier run, relative to the run's artefacts."""
    return f"{SALIENCY_DIR}/{image_id}.png"


def saliency_path(run: ModelRun, image_id: int) -> Path:
    """The local path of the saliency overlay of an image under a classifier run (fetched from the artefact
    storage first: retrieval.runs.artefacts); it does not exist when the run has no overlay of the image."""
    return artefacts.fetch(run, saliency_name(image_id))


def run_vectors(*, run: ModelRun) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, float32 embeddings) of a run; raises ApplicationError when not embedded yet."""
    emb, ids = artefacts.fetch(run, EMBEDDINGS_FILE), artefacts.fetch(run, IDS_FILE)  # shared storage: refreshed
    if not emb.exists() or not ids.exists():
        raise ApplicationError(f"Run {run.name!r} has no embeddings yet (status: {run.status}).")
    out = _load(str(ids), ids.stat().st_mtime_ns), _load(str(emb), emb.stat().st_mtime_ns)
    if len(out[0]) != len(out[1]):  # fetched while the embed stage was storing the pair
        raise ApplicationError(f"Run {run.name!r}'s embeddings are being updated: try again in a moment.")
    return out


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> np.ndarray:
    return np.load(path, mmap_mode=None)


def run_metric(run: ModelRun) -> str:
    """The distance a run ranks with: "cosine" (default), "l2" or "ssim"."""
    return run.config.get("metric", "cosine")


class Ranker(Protocol):
    """What every method's ranker does: distances (lower is closer) from a query image to candidates."""

    def has(self, image_id: int) -> bool:
        """Whether the run can rank this image (an embedding run: whether it was embedded)."""

    def available(self, pool_ids: Sequence[int] | None = None) -> list[int]:
        """The images of the pool (default: the run's whole collection) that the run can rank."""

    def rank(self, query_id: int, candidate_ids: Sequence[int]) -> np.ndarray:
        """Distances from the query to each candidate, in the candidates' order."""


class EmbeddingRanker:
    """Embedding runs: distances between the run's stored embeddings under the run's metric."""

    def __init__(self, run: ModelRun):
        self.run = run
        self.ids, self.vectors = run_vectors(run=run)
        self.metric = run_metric(run)
        self._position = {int(i): n for n, i in enumerate(self.ids)}

    def rows(self, image_ids: Sequence[int]) -> np.ndarray:
        missing = [i for i in image_ids if i not in self._position]
        if missing:
            raise ApplicationError(f"Run {self.run.name!r} has no embedding for image(s) {missing[:5]}.")
        return self.vectors[[self._position[i] for i in image_ids]]

    def has(self, image_id: int) -> bool:
        return int(image_id) in self._position

    def available(self, pool_ids: Sequence[int] | None = None) -> list[int]:
        """The images of the pool (default: all) that this run can rank: those with an embedding."""
        if pool_ids is None:
            return [int(i) for i in self.ids]
        return [int(i) for i in pool_ids if int(i) in self._position]

    def rank(self, query_id: int, candidate_ids: Sequence[int]) -> np.ndarray:
        return pairwise_distances(self.rows([query_id]), self.rows(list(candidate_ids)), self.metric)[0]


class SsimRanker:
    """The SSIM baseline (papers 001/003): 1 − SSIM of the greyscale renditions resized to config size.

    Each rendition is read once per call; the matrix of a part is kept in the run's folder with the
    image ids and size, so a re-evaluation and the comparison table do not redo the n²/2 comparisons."""

    def __init__(self, run: ModelRun):
        self.run = run
        self.size = int(run.config.get("size", 128))
        self._greys: dict[int, np.ndarray] = {}  # each rendition read once per ranker

    def has(self, image_id: int) -> bool:
        return True  # every image of the collection has a rendition

    def available(self, pool_ids: Sequence[int] | None = None) -> list[int]:
        if pool_ids is None:
            return list(Image.objects.filter(dataset=self.run.dataset_id).order_by("pk").values_list("pk", flat=True))
        return [int(i) for i in pool_ids]

    def greys(self, image_ids: Sequence[int]) -> dict[int, np.ndarray]:
        todo = [i for i in dict.fromkeys(image_ids) if i not in self._greys]
        images = {i.pk: i for i in Image.objects.filter(pk__in=todo)}
        missing = [i for i in todo if i not in images]
        if missing:
            raise ApplicationError(f"No image with id {missing[0]}.")
        try:
            self._greys.update({pk: self._grey(image) for pk, image in images.items()})
        except OSError as exc:
            raise ApplicationError(f"An image's rendition could not be read for SSIM: {exc}") from exc
        return {i: self._greys[i] for i in image_ids}

    def _grey(self, image: Image) -> np.ndarray:
        with image.rendition.open("rb") as fh, PILImage.open(fh) as pil:
            return prepare(pil.convert("L"), self.size)  # renditions are 8-bit: no torch rescaling

    def rank(self, query_id: int, candidate_ids: Sequence[int]) -> np.ndarray:
        greys = self.greys([query_id, *candidate_ids])
        return np.array([ssim_distance(greys[query_id], greys[c]) for c in candidate_ids], dtype=np.float64)

    def matrix(self, image_ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The symmetric (n, n) 1 − SSIM matrix of the images, each unordered pair compared once (the
        evaluation of an SSIM run, which has no embeddings to rank by; `progress(done, total)` per row)."""
        ids = np.asarray(image_ids, dtype=np.int64)
        path = run_artefact_dir(self.run) / SSIM_FILE
        cached = _cached_matrix(path, ids, self.size)
        if cached is not None:
            return cached
        greys = self.greys(list(image_ids))
        grey = [greys[int(i)] for i in ids]
        n = len(grey)
        d = np.zeros((n, n))
        for a in range(n - 1):
            for b in range(a + 1, n):
                d[a, b] = d[b, a] = ssim_distance(grey[a], grey[b])
            if progress is not None:
                progress((a + 1) * (2 * n - a - 2) // 2, n * (n - 1) // 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{SSIM_FILE}.")  # concurrent writers: last wins
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, ids=ids, size=self.size, distances=d)
        os.replace(partial, path)
        return d


def _cached_matrix(path: Path, ids: np.ndarray, size: int) -> np.ndarray | None:
    """The stored SSIM matrix when it was computed for exactly these images at this size."""
    try:
        with np.load(path) as stored:
            if int(stored["size"]) == size and np.array_equal(stored["ids"], ids):
                return stored["distances"]
    except (OSError, ValueError, KeyError):
        return None
    return None


def ranker_for(run: ModelRun) -> Ranker:
    """The one place a run's method decides how it ranks."""
    return SsimRanker(run) if run.method == "ssim" else EmbeddingRanker(run)


NeighboursFn = Callable[..., list[tuple[int, int, float]]]  # (query_id, k, farthest=False) -> [(id, rank, d)]


def neighbours_fn(run: ModelRun, pool_ids: Sequence[int] | None = None) -> NeighboursFn:
    """`neighbours(query_id, k, farthest=False)` under a run: the k nearest (or farthest) images of the pool
    as (image id, rank, distance), the query itself excluded.

    `pool_ids` restricts the candidates (e.g. one split part) to those the run can rank. Rank 1 is the
    nearest in the pool, also for the farthest list (ranks count from the near end). One ranker serves
    every query (an SSIM ranker reads each rendition once) and the last query's distances are kept, so
    asking for its nearest and then its farthest ranks the pool once.
    """
    ranker = ranker_for(run)
    last: dict[int, tuple[list[int], np.ndarray]] = {}

    def neighbours(query_id: int, k: int, farthest: bool = False) -> list[tuple[int, int, float]]:
        if query_id not in last:
            if not ranker.has(query_id):
                raise ApplicationError(f"Run {run.name!r} has no embedding for image {query_id}.")
            ids = [i for i in ranker.available(pool_ids) if i != query_id]
            last.clear()
            last[query_id] = ids, ranker.rank(query_id, ids)
        ids, distances = last[query_id]
        return ranked_neighbours(ids, distances, k, farthest=farthest)

    return neighbours


def ranked_neighbours(
    ids: list[int], distances: np.ndarray, k: int, *, farthest: bool = False
) -> list[tuple[int, int, float]]:
    """The k nearest (or farthest) of `ids` by `distances` as (id, rank, distance); rank 1 = nearest, ties by order."""
    order = np.argsort(distances, kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(1, len(order) + 1)
    chosen = order[::-1][:k] if farthest else order[:k]
    return [(int(ids[j]), int(ranks[j]), float(distances[j])) for j in chosen]
