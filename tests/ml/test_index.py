"""retrieval.ml.index: VectorIndex against brute-force numpy search; save/load, add, exclusion, HNSW recall."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.ml.index import VectorIndex, move_index

pytestmark = pytest.mark.ml


def vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    """Random float32 vectors."""
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def clustered(n: int, d: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Vectors around random centres, closer to real embeddings than isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, positions) in numpy: cosine similarity descending or squared L2 ascending."""
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = q @ b.T
        order = np.argsort(-scores, axis=1)[:, :k]
    else:
        scores = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
        order = np.argsort(scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_search_equals_brute_force_with_own_ids(metric):
    base, queries = vectors(300), vectors(20, seed=1)
    ids = np.arange(300) * 10 + 1000
    index = VectorIndex.build(base, ids, kind="flat", metric=metric)
    scores, found = index.search(queries, 5)
    ref_scores, ref_pos = brute_force(base, queries, 5, metric)
    np.testing.assert_array_equal(found, ids[ref_pos])
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)


def test_auto_is_flat_below_threshold_and_hnsw_above():
    assert VectorIndex.build(vectors(100)).kind == "flat"
    assert VectorIndex.build(vectors(100), hnsw_threshold=50).kind == "hnsw"
    assert VectorIndex.build(vectors(2000), kind="ivf").kind == "ivf"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    base = clustered(2000)
    index = VectorIndex.build(base, np.arange(2000) + 7, kind=kind, metric="cosine")
    before = index.search(base[:10], 5)
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["kind"] == kind and meta["count"] == 2000 and meta["dim"] == 32 and meta["metric"] == "cosine"
    assert np.load(tmp_path / "idx" / "ids.npy").tolist() == list(range(7, 2007))
    loaded = VectorIndex.load(tmp_path / "idx")
    after = loaded.search(base[:10], 5)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0])
    assert len(loaded) == 2000 and loaded.params == index.params


def test_incremental_add_equals_single_build():
    base = vectors(500)
    whole = VectorIndex.build(base, kind="flat")
    parts = VectorIndex.build(base[:200], kind="flat")
    parts.add(base[200:350])
    parts.add(base[350:], ids=np.arange(350, 500))
    assert parts.ids.tolist() == list(range(500))
    queries = vectors(10, seed=3)
    np.testing.assert_array_equal(parts.search(queries, 8)[1], whole.search(queries, 8)[1])
    with pytest.raises(ValueError, match="unique"):
        parts.add(base[:1], ids=[3])


def test_self_exclusion_gives_neighbours_among_the_others():
    base = vectors(200)
    ids = np.arange(200) + 500
    index = VectorIndex.build(base, ids, kind="flat")
    scores, found = index.search(base, 4, exclude_ids=ids)
    assert not (found == ids[:, None]).any()
    _, ref_pos = brute_force(base, base, 5, "cosine")
    np.testing.assert_array_equal(found, ids[ref_pos[:, 1:]])
    assert np.isfinite(scores).all()


def test_exclusion_sets_and_duplicates():
    base = np.vstack([vectors(50), vectors(1)[0:1]]).astype(np.float32)
    base[10] = base[50]  # an exact duplicate: self-exclusion must drop the query, not its twin
    index = VectorIndex.build(base, kind="flat")
    _, found = index.search(base[[10]], 3, exclude_ids=[10])
    assert found[0, 0] == 50 and 10 not in found[0]
    _, found = index.search(base[[10]], 3, exclude_ids=[[10, 50]])
    assert not {10, 50} & set(found[0].tolist())


def test_fewer_results_than_k_are_padded():
    index = VectorIndex.build(vectors(3), kind="flat")
    scores, found = index.search(vectors(1, seed=9), 5, exclude_ids=[0])
    assert found.shape == (1, 5) and (found[0, 2:] == -1).all() and np.isnan(scores[0, 2:]).all()
    assert set(found[0, :2].tolist()) == {1, 2}


def test_hnsw_recall_on_clustered_data():
    data = clustered(20_200, seed=4)  # queries from the same clusters as the base
    base, queries = data[:20_000], data[20_000:]
    index = VectorIndex.build(base, kind="hnsw", hnsw_m=16, ef_construction=100, ef_search=64)
    _, found = index.search(queries, 10)
    _, exact = brute_force(base, queries, 10, "cosine")
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9


def test_ivf_recall_reasonable():
    data = clustered(5100, seed=6)
    base, queries = data[:5000], data[5000:]
    index = VectorIndex.build(base, kind="ivf", nprobe=8)
    _, found = index.search(queries, 10)
    _, exact = brute_force(base, queries, 10, "cosine")
    assert np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]) >= 0.8


def test_move_index_is_noop_without_gpu():
    index = VectorIndex.build(vectors(10), kind="flat")
    raw = index._index
    assert move_index(raw, gpu=True) is raw and move_index(raw, gpu=False) is raw


def test_bad_arguments():
    with pytest.raises(ValueError):
        VectorIndex.build(vectors(10), kind="tree")
    with pytest.raises(ValueError):
        VectorIndex.build(vectors(10), metric="manhattan")
    index = VectorIndex.build(vectors(10))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 5), np.float32), 3)


def test_load_refuses_inconsistent_files(tmp_path):
    VectorIndex.build(vectors(20), kind="flat").save(tmp_path / "idx")
    np.save(tmp_path / "idx" / "ids.npy", np.arange(19))
    with pytest.raises(ValueError, match="disagree"):
        VectorIndex.load(tmp_path / "idx")
