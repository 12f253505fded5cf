"""Imports and embeddings over many workers (issue 13, point 6): throughput with 1, 2 and 4 worker processes.

The same generated collection (retrieval.imports.phantoms, `--images` of `--size` px PNGs; `--real FOLDER` adds a
folder of real radiographs) is imported by 1, 2 and 4 cpu worker processes, each started as users start them
(`manage.py worker cpu`, core.workers.worker_argv, CPU_WORKER_CONCURRENCY=1, one BLAS thread) over Redis; the
import runs in chunks of `--chunk` files (IMPORT_CHUNK_SIZE). Then a run (timm resnet18, random weights) embeds
the collection with 1, 2 and 4 gpu-role workers in shards of `--shard` images (EMBED_SHARD_SIZE). Each time is
from sending the job's task to the job's end (planning, every part, the finishing step; for the run, the index
too), and is reported as images/s and as a ratio to one worker (goal: ≥ 0.85·N up to the machine's cores).

Baseline in the same run: the per-image work of an import without the platform (decode, 1,024-px rendition PNG,
thumbnail, files written) in this process, against the import's images/s with one worker (goal ≥ 0.8).
Memory: `--memory-files` tiny files (default 20,000) and a tenth of them are imported by one worker; the peak
RSS (VmHWM) of its processes must stay flat (the larger import's peak ≤ 1.25 × the smaller's). The 112k-image
extrapolation (NIH ChestX-ray14) divides 112,120 by one worker's images/s times N times the scaling efficiency
measured at the most workers run here that each have a core.

Needs Redis (`--broker`, default redis://127.0.0.1:6379/14: flushed) and a database (`--database-url`;
PostgreSQL for a meaningful measurement: SQLite serialises every commit). Everything else lives in a temporary
folder. Shared or small machines show no scaling: run the recorded measurement on a quiet machine.

    python benchmarks/bench_scale.py --database-url postgres://postgres@127.0.0.1:5432/cbir_bench
    python benchmarks/bench_scale.py --images 300 --memory-files 2000 --no-record   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402

NIH_IMAGES = 112_120


def goal(workers: int) -> float:
    """The speed-up goal of `workers` processes over one: 0.85 per worker up to the machine's cores (more workers
    than cores share them: 4 workers on 2 cores are held to 2 cores' goal)."""
    return 0.85 * min(workers, os.cpu_count() or 1)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="generated images (default 5000)")
    parser.add_argument("--size", type=int, default=128, help="their side in pixels (default 128)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--chunk", type=int, default=100, help="IMPORT_CHUNK_SIZE (default 100)")
    parser.add_argument("--shard", type=int, default=500, help="EMBED_SHARD_SIZE (default 500)")
    parser.add_argument("--memory-files", type=int, default=20_000, help="files of the memory check (0: skip)")
    parser.add_argument("--real", type=Path, default=None, help="a folder of real radiographs, imported too")
    parser.add_argument("--no-embed", action="store_true", help="imports only")
    parser.add_argument(
        "--embed-size", type=int, default=128, help="the run's input side (resize = crop; default 128; 224 as ImageNet)"
    )
    parser.add_argument("--broker", default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""), help="default: SQLite")
    add_record_arguments(parser)
    return parser.parse_args()


def setup(args, tmp: Path) -> None:
    """Settings for this process and the workers it starts (they inherit the environment), then Django."""
    os.environ.update(
        {
            "DEBUG": os.environ.get("DEBUG", "true"),
            "DATA_DIR": str(tmp / "data"),
            "CELERY_BROKER_URL": args.broker,
            "IMPORT_CHUNK_SIZE": str(args.chunk),
            "EMBED_SHARD_SIZE": str(args.shard),
            "CPU_WORKER_CONCURRENCY": "1",
            "JOB_REQUEUE_SECONDS": "5",
            **{v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        }
    )
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        _create_database(args.database_url)
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(args.broker).flushdb()


def _create_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        name = parsed.path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# --------------------------------------------------------------------------- workers


class Workers:
    """`n` worker processes of one role, as `manage.py worker <role>` starts them."""

    def __init__(self, role: str, n: int, log: Path):
        from core.workers import worker_argv

        self.log = log.open("ab")
        self.procs = [
            subprocess.Popen(
                worker_argv(role, name=f"bench-{role}-{i}-{os.getpid()}@%h"),
                cwd=ROOT,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for i in range(n)
        ]
        self.path = log
        deadline = time.monotonic() + 120
        while self.path.read_text(errors="replace").count(" ready.") < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"workers did not start; see {self.path}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The worker processes and their pool children."""
        pids = [p.pid for p in self.procs]
        for proc in self.procs:
            for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    pids += [int(c) for c in (task / "children").read_text().split()]
        return pids

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.log.close()


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_job(model, pk: int, workers: Workers, *, poll: float = 0.2, timeout: float = 24 * 3600) -> tuple:
    """Wait for a job's end; (its row, the largest VmHWM in KiB of any worker process seen meanwhile)."""
    peak, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = model.objects.get(pk=pk)
        peak = max([peak, *(vm_hwm_kib(p) for p in workers.pids())])
        if row.is_finished:
            if row.status != "succeeded":
                raise SystemExit(f"{model.__name__} {pk} {row.status}: {row.error} (worker log: {workers.path})")
            return row, peak
        time.sleep(poll)
    raise SystemExit(f"{model.__name__} {pk} did not finish")


# --------------------------------------------------------------------------- measurements


def generate(folder: Path, n: int, size: int) -> Path:
    """The phantom collection as PNG files (its pixels are held while generating: n × size² bytes)."""
    import numpy as np
    from PIL import Image as PILImage

    from retrieval.imports import phantoms

    folder.mkdir(parents=True)
    for p in phantoms.generate_chest_phantoms(n, seed=13, size=size):
        PILImage.fromarray(np.asarray(p.pixels)).save(folder / p.filename)
    return folder


def tiny_files(folder: Path, n: int) -> Path:
    """`n` distinct 16-px PNGs, a thousand per sub-folder."""
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(sub / f"{i:06d}.png")
    return folder


def baseline_per_second(folder: Path, media: Path, limit: int = 300) -> float:
    """Images/s of an import's per-image work without the platform: read, decode, rendition + thumbnail PNGs,
    three files written."""
    from django.conf import settings

    from retrieval.imports.imaging.decode import decode_image
    from retrieval.imports.imaging.renditions import make_rendition, make_thumbnail

    files = sorted(p for p in folder.rglob("*") if p.is_file())[:limit]
    media.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, path in enumerate(files):
        data = path.read_bytes()
        decoded = decode_image(data, max_pixels=settings.IMPORT_MAX_PIXELS)
        (media / f"{i}.orig").write_bytes(data)
        (media / f"{i}.r.png").write_bytes(make_rendition(decoded.pixels, max_side=settings.RENDITION_MAX_SIDE))
        (media / f"{i}.t.png").write_bytes(make_thumbnail(decoded.pixels, max_side=settings.THUMBNAIL_MAX_SIDE))
    return len(files) / (time.perf_counter() - start)


def import_with(source: Path, n_workers: int, name: str, logs: Path) -> tuple[float, int, object, int]:
    """(seconds, images imported, the dataset, peak VmHWM KiB) of an import by `n_workers` cpu workers."""
    from retrieval.imports import services
    from retrieval.models import ImportJob
    from retrieval.tasks import import_run

    dataset = services.dataset_create(name=f"{name} {os.getpid()}-{time.time_ns()}")  # a database used before
    job = services.import_job_create(dataset=dataset, source_path=source, enqueue=False)
    workers = Workers("cpu", n_workers, logs / f"{name}.log")
    try:
        start = time.perf_counter()
        import_run.apply_async(kwargs={"job_id": job.pk})
        job, peak = wait_job(ImportJob, job.pk, workers)
        return time.perf_counter() - start, job.n_imported, dataset, peak
    finally:
        workers.stop()


def embed_with(dataset, n_workers: int, name: str, logs: Path, size: int = 128) -> float:
    from retrieval.models import ModelRun
    from retrieval.runs.services import run_create
    from retrieval.tasks import run_execute

    crop = size if size != 128 else 112
    config = {"backbone": "resnet18", "weights": "random", "resize": size, "crop": crop, "batch_size": 32}
    run = run_create(dataset=dataset, name=f"{name} {time.time_ns()}", method="timm", config=config, enqueue=False)
    workers = Workers("gpu", n_workers, logs / f"{name}.log")
    try:
        start = time.perf_counter()
        run_execute.apply_async(kwargs={"run_id": run.pk})
        wait_job(ModelRun, run.pk, workers, poll=0.5)
        return time.perf_counter() - start
    finally:
        workers.stop()


def main() -> int:
    args = parse()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    logs = tmp / "logs"
    logs.mkdir()
    try:
        setup(args, tmp)
        collections = [("generated", generate(tmp / "generated", args.images, args.size))]
        if args.real:
            collections.append(("real", args.real.resolve()))
        rows, missed, summary = [], [], {}
        for label, folder in collections:
            base = baseline_per_second(folder, tmp / "baseline")
            one = None
            for w in args.workers:
                seconds, n, dataset, _ = import_with(folder, w, f"{label}-import-{w}", logs)
                rate = n / seconds
                one = one or rate
                ratio = rate / one
                rows.append(
                    [label, "import", w, n, f"{seconds:.1f}", f"{rate:.1f}", f"{ratio:.2f}×", f"{goal(w):.2f}×"]
                )
                if ratio < goal(w):
                    missed.append(f"{label} import with {w} workers ({ratio:.2f}×)")
                if w == args.workers[0]:
                    first = dataset
                    per_image = rate / base
                    summary[label] = {"baseline": base, "import1": rate, "vs_baseline": per_image}
                    if per_image < 0.8:
                        missed.append(f"{label} import per image {per_image:.2f}× the baseline")
                summary[label][f"import{w}"] = rate
            if args.no_embed:
                continue
            one = None
            for w in args.workers:
                seconds = embed_with(first, w, f"{label}-embed-{w}", logs, args.embed_size)
                rate = first.images.count() / seconds
                one = one or rate
                ratio = rate / one
                rows.append(
                    [
                        label,
                        "embed",
                        w,
                        first.images.count(),
                        f"{seconds:.1f}",
                        f"{rate:.1f}",
                        f"{ratio:.2f}×",
                        f"{goal(w):.2f}×",
                    ]
                )
                if ratio < goal(w):
                    missed.append(f"{label} embedding with {w} workers ({ratio:.2f}×)")
        table = markdown_table(
            ["collection", "work", "workers", "images", "seconds", "images/s", "vs 1 worker", "goal"], rows
        )
        gen = summary["generated"]
        # more workers than cores share them: the efficiency of the most workers that each have a core
        most = max([w for w in args.workers if w <= (os.cpu_count() or 1)] or [min(args.workers)])
        efficiency = gen[f"import{most}"] / (gen["import1"] * most)
        extrapolation = markdown_table(
            ["workers", "import of 112,120 images (h)"],
            [
                [w, f"{NIH_IMAGES / (gen['import1'] * w * (1 if w == 1 else efficiency)) / 3600:.2f}"]
                for w in (1, 4, 16)
            ],
        )
        baseline = markdown_table(
            ["collection", "baseline images/s", "import images/s (1 worker)", "ratio (goal ≥ 0.8)"],
            [[k, f"{v['baseline']:.1f}", f"{v['import1']:.1f}", f"{v['vs_baseline']:.2f}"] for k, v in summary.items()],
        )
        memory = ""
        if args.memory_files:
            small = max(1, args.memory_files // 10)
            big_folder = tiny_files(tmp / "tiny", args.memory_files)
            small_folder = tiny_files(tmp / "tiny-small", small)
            _, _, _, peak_small = import_with(small_folder, 1, "memory-small", logs)
            _, _, _, peak_big = import_with(big_folder, 1, "memory-big", logs)
            flat = peak_big <= 1.25 * peak_small
            if not flat:
                missed.append(f"memory: {peak_big / 1024:.0f} MiB for {args.memory_files} files")
            memory = markdown_table(
                ["files", "peak RSS of a worker process (VmHWM, MiB)"],
                [[small, f"{peak_small / 1024:.0f}"], [args.memory_files, f"{peak_big / 1024:.0f}"]],
            )
        text = "\n\n".join(
            [
                table,
                baseline,
                f"Extrapolation (one worker's import rate × N × the efficiency at {most} workers, "
                f"{efficiency:.2f}):\n\n" + extrapolation,
                *(
                    [
                        f"Memory ({'flat' if not any(m.startswith('memory') for m in missed) else 'NOT flat'}):\n\n"
                        + memory
                    ]
                    if memory
                    else []
                ),
            ]
        )
        print(text)
        notes = (
            f"{args.images} generated {args.size}-px PNGs, chunks of {args.chunk}, shards of {args.shard}; "
            f"database {'PostgreSQL' if args.database_url else 'SQLite'}. "
            + ("Goals missed: " + "; ".join(missed) + "." if missed else "Every goal met.")
        )
        record(
            "scale",
            text,
            title="Imports and embeddings over 1, 2 and 4 workers",
            args=args,
            variant=f"{args.images}img",
            notes=notes,
        )
        return 1 if missed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
