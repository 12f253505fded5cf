"""SSIM baseline: ranking a catalogue of 30 against a query, retrieval.ml.ssim against baselines in the same run.

Timed, each as the median of `--repeats` runs on the same images:

* ssim_rank        — retrieval.ml.ssim.ssim_rank: greyscale + resize to `--size` (PIL bilinear),
                     then skimage's structural_similarity per candidate (the platform's method);
* ssim_rank[small] — the same from renditions already at 256 px (what the platform stores);
* score only       — skimage SSIM on images already at `--size` (no resizing): what the ranking
                     itself costs;
* full resolution  — skimage SSIM on the original images (no resizing; the naive alternative);
* MSE              — negative mean squared error on the same resized images (the cheapest
                     pixel baseline, for scale).

Images are radiograph-like: smooth shading plus noise, `--resolution` pixels square. The goal is
"well under a second" for 30 candidates; the ratio column is time / ssim_rank time.

    python benchmarks/bench_ssim.py                        # 30 candidates, 1024 px originals, size 128
    python benchmarks/bench_ssim.py --resolution 2048 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import skimage  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402
from retrieval.ml.ssim import prepare, ssim_rank  # noqa: E402


def radiographs(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """n greyscale uint8 images with smooth anatomy-like shading and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        shade = 120 + 80 * np.sin(3 * xx + rng.uniform(0, 6)) * np.cos(2 * yy + rng.uniform(0, 6))
        images.append(np.clip(shade + rng.normal(0, 12, xx.shape), 0, 255).astype(np.uint8))
    return images


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn() in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def mse_rank(query: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """Candidate order by increasing mean squared error to the query."""
    q = query.astype(np.float64)
    errors = np.array([np.mean((c.astype(np.float64) - q) ** 2) for c in candidates])
    return np.argsort(errors, kind="stable")


def main() -> None:
    """Time every variant, print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=1024, help="side of the original images")
    parser.add_argument("--size", type=int, default=128, help="SSIM resize (retrieval.ml.ssim default)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--goal-ms", type=float, default=500.0)
    parser.add_argument("--json", type=Path)
    add_record_arguments(parser)
    args = parser.parse_args()

    images = radiographs(args.candidates + 1, args.resolution)
    query, candidates = images[0], images[1:]
    small = [np.asarray(Image.fromarray(i).resize((256, 256), Image.BILINEAR)) for i in images]
    resized = [prepare(i, args.size) for i in images]
    order, _ = ssim_rank(query, candidates, args.size)
    full_order = np.argsort([-structural_similarity(query, c, data_range=255) for c in candidates], kind="stable")

    timings = {
        "ssim_rank": median_ms(lambda: ssim_rank(query, candidates, args.size), args.repeats),
        "ssim_rank[small]": median_ms(lambda: ssim_rank(small[0], small[1:], args.size), args.repeats),
        "score only": median_ms(
            lambda: [structural_similarity(resized[0], c, data_range=255) for c in resized[1:]], args.repeats
        ),
        "full resolution": median_ms(
            lambda: [structural_similarity(query, c, data_range=255) for c in candidates], max(1, args.repeats // 3)
        ),
        "MSE": median_ms(lambda: mse_rank(resized[0], resized[1:]), args.repeats),
    }
    base = timings["ssim_rank"]
    print(
        f"SSIM ranking of {args.candidates} candidates ({args.resolution} px originals, resized to {args.size} px), "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'variant':<18}{'ms':>10}{'ratio':>9}")
    for name, ms in timings.items():
        print(f"{name:<18}{ms:>10.1f}{ms / base:>9.2f}")
    top5_overlap = len(set(order[:5].tolist()) & set(full_order[:5].tolist()))
    print(
        f"goal < {args.goal_ms:.0f} ms: {'met' if base < args.goal_ms else 'NOT met'}; "
        f"top-5 overlap with full-resolution SSIM: {top5_overlap}/5"
    )
    if args.json:
        report = {
            "benchmark": "ssim",
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "skimage": skimage.__version__,
                "platform": platform.platform(),
            },
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "timings_ms": timings,
            "top5_overlap_with_full_resolution": top5_overlap,
            "meets_goal": base < args.goal_ms,
        }
        args.json.write_text(json.dumps(report, indent=2))
    default = (args.candidates, args.resolution, args.size) == (30, 1024, 128)
    record(
        "ssim",
        markdown_table(
            ["variant", "median ms", "× ssim_rank"],
            [[name, f"{ms:,.1f}", f"{ms / base:.2f}"] for name, ms in timings.items()],
        ),
        variant="" if default else f"{args.candidates}c.{args.resolution}px.{args.size}",
        args=args,
        title=f"SSIM ranking of {args.candidates} candidates, {args.resolution} px originals, size {args.size}",
        notes=f"Median of {args.repeats} runs (full resolution: {max(1, args.repeats // 3)}). "
        f"Goal < {args.goal_ms:.0f} ms: {'met' if base < args.goal_ms else '**not met**'}; "
        f"top 5 agree with full-resolution SSIM on {top5_overlap} of 5.",
    )


if __name__ == "__main__":
    main()
