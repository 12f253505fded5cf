"""Vector index: a small FAISS wrapper with build / add / search / save / load over stable int64 ids.

Cosine similarity is the inner product of L2-normalised vectors (vectors and queries are normalised
here, on copies). Scores returned by `search` are cosine similarities (higher is closer) for
metric "cosine" and squared Euclidean distances (lower is closer) for metric "l2". For "l2" the vectors
are indexed as given: raw (unnormalised) features stay raw, so L2 ranks differently from cosine.

Our ids live in a separate int64 array (position → id), saved beside the index as ids.npy, rather
than in an IndexIDMap2: IDMap's label translation runs an unconditional OpenMP loop that stalls
single-query searches for milliseconds whenever the CPUs are busy with other work.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

KINDS = ("auto", "flat", "hnsw", "ivf")
METRICS = ("cosine", "l2")
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class IndexParams:
    """Tuning knobs: HNSW above `hnsw_threshold` vectors for kind "auto"; HNSW M/ef; IVF nlist/nprobe."""

    hnsw_threshold: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 100  # benchmarks/bench_faiss.py: recall@10 0.99 at efSearch 128 on 1M × 512
    ef_search: int = 128
    nlist: int | None = None  # default: 4·√n, at most n/39 (FAISS wants ≥ 39 training points per list)
    nprobe: int = 16


def move_index(index: faiss.Index, *, gpu: bool) -> faiss.Index:
    """The index on the GPU (flat/IVF, when a GPU FAISS build and a device exist) or back on the CPU."""
    on_gpu = "Gpu" in type(index).__name__
    if not gpu:
        return faiss.index_gpu_to_cpu(index) if on_gpu else index
    if on_gpu or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:  # e.g. HNSW has no GPU implementation: stay on the CPU
        return index


def _faiss_metric(metric: str) -> int:
    """FAISS metric constant for "cosine" (inner product on normalised vectors) or "l2"."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _as_matrix(vectors: np.ndarray, dim: int | None, *, normalise: bool) -> np.ndarray:
    """A C-contiguous float32 (n, d) copy, L2-normalised for cosine."""
    matrix = np.array(vectors, dtype=np.float32, copy=True, order="C", ndmin=2)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}.")
    if normalise and len(matrix):
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), np.float32(1e-12))
    return matrix


def _resolve_kind(kind: str, n: int, params: IndexParams) -> str:
    """The concrete index kind: "auto" is exact flat below the HNSW threshold, HNSW above."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if kind != "auto":
        return kind
    return "hnsw" if n >= params.hnsw_threshold else "flat"


def _default_nlist(n: int) -> int:
    """IVF list count: about 4·√n, but at least 39 training vectors per list."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


class VectorIndex:
    """A FAISS index (flat, HNSW or IVF) with our own int64 ids: searches return ids, not positions."""

    def __init__(
        self,
        index: faiss.Index,
        *,
        kind: str,
        metric: str,
        params: IndexParams | None = None,
        ids: np.ndarray | None = None,
    ) -> None:
        self._index = index
        self._ids = np.zeros(0, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self._ids) != index.ntotal:
            raise ValueError(f"{index.ntotal} vectors but {len(self._ids)} ids.")
        self.kind = kind
        self.metric = metric
        self.params = params or IndexParams()

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[int] | np.ndarray | None = None,
        *,
        kind: str = "auto",
        metric: str = "cosine",
        gpu: bool = False,
        **params: Any,
    ) -> VectorIndex:
        """Build an index over `vectors` (ids default to 0..n-1); IVF is trained on these vectors."""
        settings = IndexParams(**params)
        matrix = _as_matrix(vectors, None, normalise=metric == "cosine")
        n, dim = matrix.shape
        concrete = _resolve_kind(kind, n, settings)
        # index_factory and read_index already return the concrete class (IndexHNSWFlat, ...); a
        # downcast_index copy would not own the C++ object and dangle once the original is collected.
        index = faiss.index_factory(dim, cls._factory_string(concrete, n, settings), _faiss_metric(metric))
        if concrete == "hnsw":
            index.hnsw.efConstruction = settings.ef_construction
        if concrete == "ivf":
            index.train(matrix)
        built = cls(move_index(index, gpu=gpu), kind=concrete, metric=metric, params=settings)
        built._add_matrix(matrix, ids)
        return built

    @staticmethod
    def _factory_string(kind: str, n: int, params: IndexParams) -> str:
        """FAISS index_factory description for a concrete kind."""
        if kind == "flat":
            return "Flat"
        if kind == "hnsw":
            return f"HNSW{params.hnsw_m},Flat"
        return f"IVF{params.nlist or _default_nlist(n)},Flat"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._index.d)

    @property
    def ids(self) -> np.ndarray:
        """The stored ids, in insertion order (a copy)."""
        return self._ids.copy()

    def add(self, vectors: np.ndarray, ids: Sequence[int] | np.ndarray | None = None) -> None:
        """Add vectors incrementally; ids default to continuing after the largest id so far."""
        self._add_matrix(_as_matrix(vectors, self.dim, normalise=self.metric == "cosine"), ids)

    def _add_matrix(self, matrix: np.ndarray, ids: Sequence[int] | np.ndarray | None) -> None:
        """Add prepared vectors with their ids, refusing duplicates."""
        if ids is None:
            start = int(self._ids.max()) + 1 if len(self) else 0
            id_array = np.arange(start, start + len(matrix), dtype=np.int64)
        else:
            id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(id_array) != len(matrix):
            raise ValueError(f"{len(matrix)} vectors but {len(id_array)} ids.")
        if len(np.unique(id_array)) != len(id_array) or (len(self) and np.isin(id_array, self._ids).any()):
            raise ValueError("ids must be unique within the index.")
        if len(matrix):
            self._index.add(matrix)
            self._ids = np.concatenate([self._ids, id_array])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude_ids: Sequence[int] | np.ndarray | Sequence[Iterable[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, each (nq, k); `exclude_ids` (one id or a set per query) are dropped.

        Missing results (fewer than k candidates) have id -1 and score NaN.
        """
        matrix = _as_matrix(queries, self.dim, normalise=self.metric == "cosine")
        excluded = _exclusion_sets(exclude_ids, len(matrix))
        extra = max((len(s) for s in excluded), default=0)
        k_search = max(1, min(k + extra, len(self)))
        self._tune(k_search)
        scores, positions = self._index.search(matrix, k_search)
        found = np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)
        return _drop_excluded(scores, found, excluded, k)

    def _tune(self, k: int) -> None:
        """Set query-time knobs: efSearch ≥ k for HNSW (else it returns fewer than k), nprobe for IVF."""
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(self.params.ef_search, k)
        elif self.kind == "ivf":
            self._index.nprobe = self.params.nprobe

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write index.faiss, ids.npy and meta.json into the directory `path` (each file replaced atomically)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (INDEX_FILE + ".tmp")
        faiss.write_index(move_index(self._index, gpu=False), str(tmp))
        os.replace(tmp, folder / INDEX_FILE)
        with open(folder / (IDS_FILE + ".tmp"), "wb") as handle:
            np.save(handle, self._ids)
        os.replace(folder / (IDS_FILE + ".tmp"), folder / IDS_FILE)
        (folder / (META_FILE + ".tmp")).write_text(json.dumps(self.metadata(), indent=2))
        os.replace(folder / (META_FILE + ".tmp"), folder / META_FILE)
        return folder

    def metadata(self) -> dict[str, Any]:
        """What the saved index is: kind, metric, dimension, count, parameters, FAISS version."""
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "count": len(self),
            "params": asdict(self.params),
            "faiss_version": faiss.__version__,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, gpu: bool = False) -> VectorIndex:
        """Read an index written by `save`, checking it against its metadata."""
        folder = Path(path)
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported index format {meta.get('format')!r}.")
        index = faiss.read_index(str(folder / INDEX_FILE))
        ids = np.load(folder / IDS_FILE)
        if not index.ntotal == len(ids) == meta["count"] or index.d != meta["dim"]:
            raise ValueError(f"{folder}: index.faiss, ids.npy and meta.json disagree.")
        params = IndexParams(**meta["params"])
        return cls(move_index(index, gpu=gpu), kind=meta["kind"], metric=meta["metric"], params=params, ids=ids)


def _exclusion_sets(
    exclude_ids: Sequence[int] | np.ndarray | Sequence[Iterable[int]] | None, n_queries: int
) -> list[set[int]]:
    """Per-query sets of ids to drop: from None, one id per query (-1 = none), or one iterable per query."""
    if exclude_ids is None:
        return [set() for _ in range(n_queries)]
    if len(exclude_ids) != n_queries:
        raise ValueError(f"exclude_ids has {len(exclude_ids)} entries for {n_queries} queries.")
    sets = []
    for item in exclude_ids:
        values = {int(item)} if np.ndim(item) == 0 else {int(v) for v in item}
        sets.append(values - {-1})
    return sets


def _drop_excluded(
    scores: np.ndarray, found: np.ndarray, excluded: list[set[int]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove excluded ids from FAISS results, keep order, pad to k with id -1 / score NaN."""
    scores = scores.astype(np.float32)
    drop = found < 0
    for row, ids in enumerate(excluded):
        if ids:
            drop[row] |= np.isin(found[row], list(ids))
    if not drop.any() and found.shape[1] >= k:
        return scores[:, :k], found[:, :k]
    order = np.argsort(drop, axis=1, kind="stable")  # kept results first, in rank order
    found = np.take_along_axis(found, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    drop = np.take_along_axis(drop, order, axis=1)
    found[drop] = -1
    scores[drop] = np.nan
    if found.shape[1] < k:
        pad = k - found.shape[1]
        found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
    return scores[:, :k], found[:, :k]
