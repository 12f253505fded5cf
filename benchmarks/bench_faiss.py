"""Vector search: exact IndexFlatIP against HNSW (through retrieval.ml.index.VectorIndex) on clustered vectors.

For each collection size: build time, median single-query top-k latency, and recall@k of HNSW
against exact search, over a sweep of efSearch; the report names the smallest efSearch that
reaches the recall goal and whether its median latency meets the latency goal.

Vectors are "realistic" in the sense that matters for graph indexes: embeddings have a low
intrinsic dimension, so they are drawn around cluster centres in a 64-d latent space, mapped
linearly to `--dim` dimensions, plus a little isotropic noise, then L2-normalised (cosine).
Queries come from the same distribution and are not in the collection.

    python benchmarks/bench_faiss.py                       # 100k and 1M, dim 512 (needs ~7 GB RAM)
    python benchmarks/bench_faiss.py --sizes 20000 --json out.json   # quick run
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402
from retrieval.ml.index import VectorIndex  # noqa: E402

LATENT_DIM = 64


def clustered_vectors(n: int, dim: int, *, seed: int, clusters: int = 1000, chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float32 unit vectors around cluster centres in a low-dimensional latent space."""
    setup = np.random.default_rng(12345)  # same centres and projection for base and queries
    centres = setup.standard_normal((clusters, LATENT_DIM), dtype=np.float32)
    projection = setup.standard_normal((LATENT_DIM, dim), dtype=np.float32) / np.sqrt(LATENT_DIM)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(0, clusters, m)] + 1.0 * rng.standard_normal((m, LATENT_DIM), dtype=np.float32)
        out[start : start + m] = z @ projection + 0.2 * rng.standard_normal((m, dim), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


def median_latency_ms(search, queries: np.ndarray) -> float:
    """Median wall time (ms) of one-query searches, after a warm-up."""
    for q in queries[:10]:
        search(q[None])
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of the exact top-k found."""
    k = exact.shape[1]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))


def bench_size(n: int, args: argparse.Namespace) -> dict:
    """All measurements for one collection size."""
    result: dict = {"n": n, "dim": args.dim, "k": args.k}
    t0 = time.perf_counter()
    base = clustered_vectors(n, args.dim, seed=1)
    queries = clustered_vectors(args.queries, args.dim, seed=2)
    result["generate_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(base)
    result["flat_build_s"] = round(time.perf_counter() - t0, 3)
    _, exact = flat.search(queries, args.k)
    result["flat_latency_ms"] = round(
        median_latency_ms(partial(flat.search, k=args.k), queries[: args.latency_queries]), 3
    )
    del flat
    gc.collect()
    print(f"n={n}: flat build {result['flat_build_s']} s, median latency {result['flat_latency_ms']} ms", flush=True)

    t0 = time.perf_counter()
    index = VectorIndex.build(
        base, kind="hnsw", metric="cosine", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction
    )
    result["hnsw_build_s"] = round(time.perf_counter() - t0, 2)
    result["hnsw_m"], result["ef_construction"] = args.hnsw_m, args.ef_construction
    del base
    gc.collect()
    print(f"n={n}: HNSW M={args.hnsw_m} efC={args.ef_construction} build {result['hnsw_build_s']} s", flush=True)
    raw = index._index  # the bare IndexHNSWFlat, to separate FAISS time from wrapper overhead
    sweep = []
    for ef in args.ef_search:
        index.params = dataclasses.replace(index.params, ef_search=ef)
        found = index.search(queries, args.k)[1]
        raw.hnsw.efSearch = ef
        row = {
            "ef_search": ef,
            "recall": round(recall(found, exact), 4),
            "latency_ms": round(
                median_latency_ms(lambda q: index.search(q, args.k), queries[: args.latency_queries]), 3
            ),
            "raw_faiss_latency_ms": round(
                median_latency_ms(lambda q: raw.search(q, args.k), queries[: args.latency_queries]), 3
            ),
        }
        sweep.append(row)
        print(
            f"  efSearch={ef:4d} recall@{args.k}={row['recall']:.4f} median {row['latency_ms']:.3f} ms "
            f"(bare FAISS {row['raw_faiss_latency_ms']:.3f} ms)",
            flush=True,
        )
    result["hnsw_sweep"] = sweep
    good = [row for row in sweep if row["recall"] >= args.recall_goal]
    result["chosen"] = good[0] if good else None
    result["meets_goal"] = bool(good and good[0]["latency_ms"] <= args.latency_goal_ms)
    return result


def main() -> None:
    """Parse arguments, run every size, print a summary and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall")
    parser.add_argument("--latency-queries", type=int, default=200, help="single queries timed for the median")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--recall-goal", type=float, default=0.95)
    parser.add_argument("--latency-goal-ms", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    add_record_arguments(parser)
    args = parser.parse_args()
    report = {
        "benchmark": "faiss",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "faiss_threads": faiss.omp_get_max_threads(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "platform": platform.platform(),
        },
        "results": [bench_size(n, args) for n in args.sizes],
    }
    print(f"\nsummary (recall goal {args.recall_goal:.2f}, latency goal {args.latency_goal_ms} ms):")
    for r in report["results"]:
        chosen = r["chosen"]
        hnsw = (
            f"efSearch {chosen['ef_search']}: recall {chosen['recall']:.3f}, {chosen['latency_ms']:.3f} ms"
            if chosen
            else "recall goal not reached"
        )
        print(
            f"  n={r['n']:>8}: exact {r['flat_latency_ms']:.3f} ms (build {r['flat_build_s']} s) | "
            f"HNSW build {r['hnsw_build_s']} s, {hnsw} | goal met: {r['meets_goal']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    for r in report["results"]:
        _record(r, args)


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:.2f}×"


def _record(r: dict, args: argparse.Namespace) -> None:
    """One section `faiss.<n>` of docs/benchmarks.md per collection size (benchmarks/record.py)."""
    rows = [["exact `IndexFlatIP`", "—", "1.000", f"{r['flat_latency_ms']:.3f}", "—", "1×", f"{r['flat_build_s']} s"]]
    for row in r["hnsw_sweep"]:
        rows.append(
            [
                f"HNSW M {r['hnsw_m']}, efC {r['ef_construction']}",
                row["ef_search"],
                f"{row['recall']:.3f}",
                f"{row['latency_ms']:.3f}",
                f"{row['raw_faiss_latency_ms']:.3f}",
                _times(r["flat_latency_ms"] / row["latency_ms"]),
                f"{r['hnsw_build_s']} s",
            ]
        )
    table = markdown_table(
        ["index", "efSearch", f"recall@{r['k']}", "median ms / query", "bare FAISS ms", "faster than exact", "build"],
        rows,
    )
    chosen = r["chosen"]
    verdict = (
        f"smallest efSearch reaching recall {args.recall_goal:.2f}: {chosen['ef_search']} "
        f"({chosen['latency_ms']:.3f} ms); latency goal {args.latency_goal_ms:g} ms "
        f"{'met' if r['meets_goal'] else '**not met**'}"
        if chosen
        else f"recall goal {args.recall_goal:.2f} **not reached**"
    )
    variant = str(r["n"]) if (r["dim"], r["k"]) == (512, 10) else f"{r['n']}.d{r['dim']}.k{r['k']}"
    record(
        "faiss",
        table,
        variant=variant,
        args=args,
        title=f"Top-{r['k']} search in {r['n']:,} clustered {r['dim']}-d unit vectors",
        notes=f"FAISS threads {faiss.omp_get_max_threads()}; {args.queries} queries for recall, "
        f"{args.latency_queries} single queries timed. {verdict[0].upper()}{verdict[1:]}.",
    )


if __name__ == "__main__":
    main()
