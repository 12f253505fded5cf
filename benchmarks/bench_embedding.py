"""Embedding throughput: the full pipeline against the bare model forward.

Pipeline = PNG files on disk → PIL decode + greyscale→RGB + resize + centre crop + normalise inside
DataLoader workers (retrieval.ml.embed.ImagePathDataset) → forward → pooled pre-logit features →
L2 normalisation (retrieval.ml.embed.embed_images). Bare = the same forward on pre-made tensors,
same batch size and device. The ratio pipeline/bare says how much the input side costs (goal ≥ 0.9).

    python benchmarks/bench_embedding.py                 # resnet18, random weights, 256 PNGs, 224 px
    python benchmarks/bench_embedding.py --workers 0 1 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402
from retrieval.ml.backbones import create_backbone, data_config  # noqa: E402
from retrieval.ml.device import autocast, resolve_device  # noqa: E402
from retrieval.ml.embed import embed_images, pooled_features  # noqa: E402
from retrieval.ml.transforms import build_transform  # noqa: E402


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """n greyscale PNGs that compress like radiographs (smooth anatomy-like shading plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        shade = 120 + 80 * np.sin(3 * xx + rng.uniform(0, 6)) * np.cos(2 * yy + rng.uniform(0, 6))
        image = np.clip(shade + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def bare_forward(model: torch.nn.Module, tensors: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Images/s of the forward pass alone on pre-made tensors (host → device copy included)."""
    with torch.inference_mode(), autocast(device):
        pooled_features(model, tensors[:batch_size].to(device))  # warm-up
        start = time.perf_counter()
        for i in range(0, len(tensors), batch_size):
            pooled_features(model, tensors[i : i + batch_size].to(device)).float().cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(tensors) / (time.perf_counter() - start)


def pipeline(
    model: torch.nn.Module, paths: list[Path], transform, batch_size: int, workers: int, device: torch.device
) -> float:
    """Images/s of embed_images over PNG files (decode + preprocess in workers + forward)."""
    embed_images(model, paths[:batch_size], transform=transform, batch_size=batch_size, num_workers=0, device=device)
    start = time.perf_counter()
    embed_images(model, paths, transform=transform, batch_size=batch_size, num_workers=workers, device=device)
    return len(paths) / (time.perf_counter() - start)


def cpu_costs(model: torch.nn.Module, tensors: torch.Tensor, paths: list[Path], transform, batch_size: int) -> dict:
    """CPU milliseconds per image of the forward pass and of decode + preprocessing (insensitive to other load).

    On a CPU-only machine both share the same cores, so forward / (forward + preprocessing) bounds
    the pipeline ratio; with a GPU the preprocessing runs on otherwise idle cores.
    """
    with torch.inference_mode():
        start = time.process_time()
        for i in range(0, len(tensors), batch_size):
            pooled_features(model, tensors[i : i + batch_size])
        forward = (time.process_time() - start) / len(tensors) * 1000
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in DataLoader workers (and no OpenMP spin-waiting billed as CPU time)
    start = time.process_time()
    for path in paths:
        with Image.open(path) as image:
            transform(image)
    preprocess = (time.process_time() - start) / len(paths) * 1000
    torch.set_num_threads(threads)
    return {
        "forward_cpu_ms_per_image": round(forward, 2),
        "preprocess_cpu_ms_per_image": round(preprocess, 2),
        "cpu_bound_ratio": round(forward / (forward + preprocess), 3),
    }


def main() -> None:
    """Parse arguments, run the comparison for each worker count, print it, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=512, help="PNG side length on disk")
    parser.add_argument("--size", type=int, default=224, help="model input (crop) size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved bare/pipeline pairs per setting")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", type=Path)
    add_record_arguments(parser)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = create_backbone(args.model, weights="random").to(device).eval()
    transform = build_transform(data_config(model, {"input_size": (3, args.size, args.size)}))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_pngs(Path(tmp), args.n, args.image_size)
        print(
            f"wrote {args.n} PNGs of {args.image_size}² in {time.perf_counter() - t0:.1f} s; "
            f"model {args.model} (random weights), input {args.size} px, batch {args.batch_size}, device {device}, "
            f"torch threads {torch.get_num_threads()}",
            flush=True,
        )
        tensors = torch.stack([transform(Image.open(p)) for p in paths])
        for workers in args.workers:
            # Interleave bare and pipeline runs and pair them: on a shared machine the load changes
            # between runs, and a ratio of neighbours in time is steadier than a ratio of bests.
            pairs = [
                (
                    bare_forward(model, tensors, args.batch_size, device),
                    pipeline(model, paths, transform, args.batch_size, workers, device),
                )
                for _ in range(args.repeats)
            ]
            ratios = [full / bare for bare, full in pairs]
            row = {
                "workers": workers,
                "bare_images_per_s": round(float(np.median([b for b, _ in pairs])), 1),
                "pipeline_images_per_s": round(float(np.median([f for _, f in pairs])), 1),
                "ratio_median": round(float(np.median(ratios)), 3),
                "ratios": [round(r, 3) for r in ratios],
            }
            results.append(row)
            print(
                f"workers={workers}: bare forward {row['bare_images_per_s']} img/s, pipeline "
                f"{row['pipeline_images_per_s']} img/s (medians), ratio median {row['ratio_median']} "
                f"(runs {row['ratios']}; goal ≥ 0.9)",
                flush=True,
            )
        costs = cpu_costs(model, tensors, paths, transform, args.batch_size) if device.type == "cpu" else {}
        if costs:
            print(
                f"CPU time per image: forward {costs['forward_cpu_ms_per_image']} ms, decode + preprocess "
                f"{costs['preprocess_cpu_ms_per_image']} ms → CPU-bound ratio {costs['cpu_bound_ratio']}",
                flush=True,
            )
    report = {
        "benchmark": "embedding",
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "device": str(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
        "cpu_costs": costs,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    _record(results, costs, device, args)


def _record(results: list[dict], costs: dict, device: torch.device, args: argparse.Namespace) -> None:
    """The section `embedding.<device>` of docs/benchmarks.md (benchmarks/record.py)."""
    table = markdown_table(
        ["DataLoader workers", "bare forward (img/s)", "pipeline (img/s)", "pipeline / bare (median)", "runs"],
        [
            [
                r["workers"],
                r["bare_images_per_s"],
                r["pipeline_images_per_s"],
                f"**{r['ratio_median']:.2f}**",
                ", ".join(f"{x:.2f}" for x in r["ratios"]),
            ]
            for r in results
        ],
    )
    cpu = (
        f" CPU time per image: forward {costs['forward_cpu_ms_per_image']} ms, decode + preprocess "
        f"{costs['preprocess_cpu_ms_per_image']} ms → CPU-bound ratio {costs['cpu_bound_ratio']}."
        if costs
        else ""
    )
    met = all(r["ratio_median"] >= 0.9 for r in results)
    default = (args.model, args.n, args.image_size, args.size, args.batch_size) == ("resnet18", 256, 512, 224, 32)
    record(
        "embedding",
        table,
        variant=device.type if default else f"{device.type}.{args.model}.{args.size}px",
        args=args,
        title=f"Embedding {args.n} PNGs ({args.image_size} px) with {args.model} on {device}",
        notes=f"Input {args.size} px, batch {args.batch_size}, random weights, torch threads "
        f"{torch.get_num_threads()}.{cpu} Goal pipeline / bare ≥ 0.9: {'met' if met else '**not met**'}.",
    )


if __name__ == "__main__":
    main()
