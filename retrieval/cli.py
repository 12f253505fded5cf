"""Shared pieces of the run commands (train, embed, build_index, search, evaluate_retrieval)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection

from core.cli import wait_for_job
from core.errors import ApplicationError
from core.jobs import JobStatus
from retrieval.models import Dataset, ModelRun, Split
from retrieval.runs.search import search_request_create
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create


def dataset_lookup(value: str) -> Dataset:
    ds = Dataset.objects.filter(name=value).first() or (
        Dataset.objects.filter(pk=value).first() if value.isdigit() else None
    )
    if ds is None:
        raise CommandError(f"No dataset named {value!r}.")
    return ds


def run_lookup(value: str) -> ModelRun:
    """A run by id, or by name when the name is unique across datasets."""
    if value.isdigit() and ModelRun.objects.filter(pk=int(value)).exists():
        return ModelRun.objects.get(pk=int(value))
    runs = list(ModelRun.objects.filter(name=value)[:2])
    if len(runs) != 1:
        raise CommandError(f"No run {value!r}." if not runs else f"Several runs are named {value!r}; give the id.")
    return runs[0]


def split_for(dataset: Dataset, name: str, seed: int) -> Split:
    """The dataset's split of that name, created (60/30/10 by patient) when missing."""
    split = Split.objects.filter(dataset=dataset, name=name).first()
    return split or split_create(dataset=dataset, name=name, seed=seed)


def ensure_can_wait() -> None:
    """Refuse to queue-and-wait inside an open transaction: the job is sent when it commits, so the wait would
    never end (a script or test calling the command inside `atomic`)."""
    if connection.in_atomic_block:
        raise CommandError(
            "Called inside an open database transaction: the job would only be queued when it "
            "commits, so waiting for the worker here would never end. Use --sync (run it in this "
            "process) or --no-wait, or call the command outside the transaction."
        )


def search_file_request(*, run: ModelRun, path: str, k: int, enqueue: bool, wait: bool = False):
    """A search request for an image file, as the web page's upload makes: the file is copied to
    UPLOAD_ROOT/search (the task removes its copy when done, never the caller's file). `wait`: the
    caller will wait for the worker (refused inside a transaction, see ensure_can_wait)."""
    source = Path(path)
    if not source.is_file():
        raise CommandError(f"{path}: no such file")
    if not 1 <= k <= 200:
        raise CommandError("k must be between 1 and 200.")
    if wait:
        ensure_can_wait()
    folder = settings.UPLOAD_ROOT / "search"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"{uuid.uuid4().hex}{source.suffix.lower()[:10]}"
    try:
        shutil.copyfile(source, copy)
    except OSError as exc:
        raise CommandError(f"{path}: {exc}") from None
    try:
        return search_request_create(run=run, upload_path=copy, k=k, enqueue=enqueue)  # --sync: not queued
    except ApplicationError as exc:
        copy.unlink(missing_ok=True)
        raise CommandError(exc.message) from None


def add_run_options(parser) -> None:
    parser.add_argument("--name", help="run name (default: derived from the options)")
    parser.add_argument("--backbone", default="resnet18", help="any timm model name")
    parser.add_argument(
        "--weights",
        default="pretrained",
        help="'pretrained' (from the Hugging Face cache), 'random', or a checkpoint file in WEIGHTS_DIR",
    )
    parser.add_argument("--metric", choices=["cosine", "l2"], default=None)
    parser.add_argument("--index", choices=["auto", "flat", "hnsw", "ivf"], default="auto")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.DATALOADER_WORKERS,
        help=f"DataLoader worker processes (default: DATALOADER_WORKERS, here {settings.DATALOADER_WORKERS})",
    )
    parser.add_argument("--split", default="default", help="split name (created 60/30/10 by patient if missing)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--graded-label", default="", help="numeric label for graded nDCG (e.g. weight)")
    parser.add_argument(
        "--normalisation",
        choices=["backbone", "dataset"],
        default="backbone",
        help="input mean/std: the backbone's own, or the dataset's (train part, computed at start)",
    )
    parser.add_argument("--sync", action="store_true", help="run in this process instead of the worker")
    parser.add_argument("--no-wait", action="store_true", help="queue and return at once")


def common_config(options) -> dict:
    cfg = {
        "backbone": options["backbone"],
        "weights": options["weights"],
        "index": options["index"],
        "resize": options["resize"],
        "crop": options["crop"],
        "batch_size": options["batch_size"],
        "workers": options["workers"],
        "normalisation": options["normalisation"],
    }
    if options["metric"]:
        cfg["metric"] = options["metric"]
    if options["graded_label"]:
        cfg["graded_label"] = options["graded_label"]
    return cfg


def create_and_follow(command, *, dataset, name, method, config, split, sync, no_wait) -> ModelRun:
    """Create the run, then run it inline (--sync), queue it, or queue and wait with a progress bar."""
    if not sync and not no_wait:
        ensure_can_wait()
    try:
        run = run_create(dataset=dataset, name=name, method=method, config=config, split=split, enqueue=not sync)
    except ApplicationError as exc:
        raise CommandError(exc.message) from None
    command.stdout.write(f"Run #{run.pk} {run.name!r} ({run.method}) created.")
    return follow(command, run, sync=sync, no_wait=no_wait)


def follow(command, run: ModelRun, *, sync: bool, no_wait: bool) -> ModelRun:
    if sync:
        from retrieval.runs.stages import run_execute

        run_execute(run_id=run.pk)
    elif no_wait:
        command.stdout.write("Queued; follow it on the run page or with `manage.py evaluate_retrieval` later.")
        return run
    run = wait_for_job(run, stream=command.stderr)
    if run.status != JobStatus.SUCCEEDED:
        raise CommandError(f"run #{run.pk} {run.status}: {run.error}")
    summary = ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
    command.stdout.write(f"Run #{run.pk} succeeded ({summary}); {run.n_embedded} images embedded.")
    ratings = run.metrics.get("ratings")
    if ratings:  # paper 004's evaluation against the readers' rating sets of the test part
        line = (
            f"Ratings on the test part ({ratings['n_items']} images): distance correlation "
            f"r = {ratings['distance_correlation_r']:.3f}, hubness index {ratings['hubness_index']:.3f}"
        )
        if ratings.get("rating_rmse") is not None:
            line += (
                f", rating RMSE {ratings['rating_rmse']:.3f} (training mean: {ratings['rating_rmse_train_mean']:.3f})"
            )
        command.stdout.write(line + ".")
    if run.metrics.get("retrieval_note"):
        command.stdout.write(run.metrics["retrieval_note"])
    return run
