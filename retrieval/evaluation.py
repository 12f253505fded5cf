"""Offline retrieval evaluation of a model run over one part of its split (numpy only, no torch).

Relevance: for a binary task, the same class (positive vs negative); otherwise images sharing a
positive finding among the evaluation labels ("No Finding" images are relevant to each other).
Graded relevance comes from a numeric label (paper 000's patient weight; the demo's CTR).
Embedding runs rank by their embeddings; SSIM runs (no embeddings) by the pairwise 1 − SSIM matrix.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.errors import ApplicationError
from retrieval import ranking
from retrieval.models import Label, ModelRun, RunStage, SplitPart

log = logging.getLogger(__name__)
MAP_FILE = "embedding_map.png"
SSIM_FILE = "ssim_distances.npz"  # an SSIM run's pairwise matrix of the evaluated images (see _ssim_matrix)
SSIM_EVAL_MAX = 300  # default config "eval_max": SSIM evaluation compares every pair of images


def eval_label_names(run: ModelRun) -> list[str]:
    """The labels relevance is judged on: the run's own task, else every 0/1 label of the dataset."""
    cfg = run.config
    if cfg.get("eval_labels"):
        return list(cfg["eval_labels"])
    if cfg.get("task") == "binary":
        return list(cfg["positive"])
    if cfg.get("task") == "multilabel":
        return list(cfg["labels"])
    names = (Label.objects.filter(image__dataset=run.dataset, value_num__in=[0.0, 1.0])
             .values_list("name", flat=True).distinct())
    numeric_other = set(Label.objects.filter(image__dataset=run.dataset, value_num__isnull=False)
                        .exclude(value_num__in=[0.0, 1.0]).values_list("name", flat=True).distinct())
    return sorted(set(names) - numeric_other)


def graded_label_name(run: ModelRun) -> str | None:
    cfg = run.config
    return cfg.get("graded_label") or (cfg.get("target") if cfg.get("task") == "regression" else None)


def evaluate_run(*, run: ModelRun, ks=(1, 3, 5, 10), ap_definition: str = "min_k_R", gain: str = "exp",
                 part: str = SplitPart.TEST, labels: list[str] | None = None, graded: str | None = None,
                 draw_map: bool = True, progress: Callable[[int, int], None] | None = None) -> dict:
    """Retrieval metrics (each beside its random baseline and a t-test) over a part of the run's split.

    Embedding runs rank by their embeddings. SSIM runs have none: they rank by the pairwise 1 − SSIM
    matrix of the part's images (O(n²) comparisons, `progress(done, total)` after each row), on at
    most config "eval_max" images, a seeded random sample when the part is larger (see `note`).
    """
    from retrieval.ml.metrics import evaluate_retrieval
    from retrieval.pipeline import label_matrix
    from retrieval.runs import split_image_ids

    if run.split is None:
        raise ApplicationError("The run has no split: evaluation needs a held-out test part.")
    ssim = run.method == "ssim"
    query_ids = split_image_ids(split=run.split, part=part)
    if not ssim:
        ids, vectors = ranking.run_vectors(run=run)
        position = {int(i): n for n, i in enumerate(ids)}
        query_ids = [i for i in query_ids if i in position]
    if len(query_ids) < 3:
        kind = "" if ssim else "embedded "
        raise ApplicationError(f"The {part} part has {len(query_ids)} {kind}images; at least 3 are needed.")
    names = labels or eval_label_names(run)
    label_values = _label_values(run, query_ids, names) if names else None
    if not labels and run.config.get("task") == "regression" and run.config.get("bins"):
        label_values, names = _binned_target(run, query_ids)
    graded = graded or graded_label_name(run)
    numeric = None
    if graded:
        numeric = label_matrix(query_ids, [graded])[:, 0]
        if np.isnan(numeric).any():
            query_ids, label_values, numeric = _take(np.flatnonzero(~np.isnan(numeric)), query_ids, label_values,
                                                     numeric)
        if len(query_ids) < 3:
            raise ApplicationError(f"Only {len(query_ids)} images of the {part} part have a value of {graded!r}; "
                                   f"at least 3 are needed for graded relevance.")
    if ssim:
        n_part = len(query_ids)
        keep, note = _ssim_sample(run, n_part, part)
        query_ids, label_values, numeric = _take(keep, query_ids, label_values, numeric)
        x, metric = _ssim_matrix(run, query_ids, progress), "precomputed"
    else:
        x, metric = vectors[[position[i] for i in query_ids]], run.config.get("metric", "cosine")
    result = evaluate_retrieval(x, label_values, numeric, ks=tuple(ks), metric=metric,
                                ap_definition=ap_definition, gain_kind=gain)
    result.update({"part": part, "labels": names, "graded_label": graded or "", "ks": list(ks)})
    if ssim:
        result.update({"metric": "ssim", "n_part_images": n_part, "note": note})
    elif draw_map:  # t-SNE of embeddings; an SSIM run has none to draw
        _draw_map(run, x, label_values, names, numeric)
    return _plain(result)


def run_evaluation_execute(*, run_id: int) -> ModelRun | None:
    """Worker body of a queued re-evaluation (see runs.run_evaluation_request): claim, evaluate, store, finish.

    Idempotent: a second delivery finds the run claimed or finished and does nothing; a delivery
    after the worker was lost (stale heartbeat) evaluates again and overwrites the same keys. A failed
    evaluation leaves the run succeeded (its model and index are fine) with the message in `error`;
    asking for the evaluation again retries it.
    """
    from core.jobs import job_run

    return job_run(ModelRun, run_id, _evaluation_body)


def _evaluation_body(run: ModelRun) -> None:
    from core.jobs import JobStatus, failure_message, job_finish, job_progress
    from retrieval.runs import EVALUATION_REQUEST

    run = ModelRun.objects.select_related("dataset", "split").get(pk=run.pk)
    request = run.metrics.get(EVALUATION_REQUEST) or {"options": {}}
    opts = request["options"]
    job_progress(run, done=0, total=1, note=f"evaluating the {opts.get('part', 'test')} part")

    def progress(done: int, total: int) -> None:  # SSIM runs: pairs compared
        job_progress(run, done=done, total=total, note=f"SSIM pairs {done}/{total}")

    error = ""
    try:
        result = evaluate_run(run=run, progress=progress, **opts)
    except Exception as exc:  # the run's model and index are fine: it stays succeeded, the message is shown
        error = failure_message(exc)
        if not isinstance(exc, ApplicationError):
            log.exception("evaluation of run %s failed", run.pk)
        metrics = {**run.metrics, EVALUATION_REQUEST: {**request, "done": True, "error": error}}
    else:
        metrics = {**run.metrics, "retrieval": result, "retrieval_note": "",
                   EVALUATION_REQUEST: {**request, "done": True, "error": ""}}
    run.metrics = metrics
    ModelRun.objects.filter(pk=run.pk).update(metrics=metrics, stage=RunStage.DONE)
    job_progress(run, done=1, total=1, note="evaluation failed" if error else "evaluated")
    job_finish(run, status=JobStatus.SUCCEEDED, error=f"Evaluation failed: {error}" if error else "")


def _take(keep: np.ndarray, query_ids: list[int], label_values: np.ndarray | None,
          numeric: np.ndarray | None) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """The kept queries (indices) with their label rows and numeric values."""
    return ([query_ids[i] for i in keep], None if label_values is None else label_values[keep],
            None if numeric is None else numeric[keep])


def _ssim_sample(run: ModelRun, n: int, part: str) -> tuple[np.ndarray, str]:
    """Indices of the images an SSIM run is evaluated on: all, or a sorted seeded sample of config eval_max."""
    cap = run.config.get("eval_max", SSIM_EVAL_MAX)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 3:
        raise ApplicationError(f"eval_max must be an integer ≥ 3, got {cap!r}.")
    if n <= cap:
        return np.arange(n), ""
    seed = int(run.config.get("seed", 0))
    keep = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
    return keep, (f"SSIM compares every pair of images: evaluated on a random sample of {cap} of the {n} "
                  f"{part} images (eval_max {cap}, seed {seed}).")


def _ssim_matrix(run: ModelRun, image_ids: list[int],
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Symmetric (n, n) 1 − SSIM, each rendition loaded once and each unordered pair compared once.

    Kept in the run's folder with the image ids and size, so the comparison table and a re-evaluation of the
    same images do not redo the n²/2 comparisons (the renditions of an image do not change).
    """
    from retrieval.methods import ssim_distance, ssim_greys

    size = int(run.config.get("size", 128))
    ids = np.asarray(image_ids, dtype=np.int64)
    path = ranking.run_artefact_dir(run) / SSIM_FILE
    cached = _cached_ssim(path, ids, size)
    if cached is not None:
        return cached
    try:
        greys = ssim_greys(image_ids, size)
    except OSError as exc:
        raise ApplicationError(f"An image's rendition could not be read for SSIM: {exc}") from exc
    grey = [greys[i] for i in image_ids]
    n = len(grey)
    d = np.zeros((n, n))
    for a in range(n - 1):
        for b in range(a + 1, n):
            d[a, b] = d[b, a] = ssim_distance(grey[a], grey[b])
        if progress is not None:
            progress((a + 1) * (2 * n - a - 2) // 2, n * (n - 1) // 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{SSIM_FILE}.")  # concurrent writers: last one wins
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, ids=ids, size=size, distances=d)
    os.replace(partial, path)
    return d


def _cached_ssim(path: Path, ids: np.ndarray, size: int) -> np.ndarray | None:
    """The stored SSIM matrix when it was computed for exactly these images at this size."""
    try:
        with np.load(path) as stored:
            if int(stored["size"]) == size and np.array_equal(stored["ids"], ids):
                return stored["distances"]
    except (OSError, ValueError, KeyError):
        return None
    return None


def _label_values(run: ModelRun, image_ids: list[int], names: list[str]) -> np.ndarray:
    from retrieval.pipeline import label_matrix

    values = np.nan_to_num(label_matrix(image_ids, names), nan=0.0) == 1
    if run.config.get("task") == "binary":
        return values.any(axis=1).astype(int)  # one class vector: positive vs negative
    return values.astype(int)


def _binned_target(run: ModelRun, image_ids: list[int]) -> tuple[np.ndarray, list[str]]:
    """Paper 000's weight classes: the regression target binned (e.g. < 150, 150–200, > 200 lbs)."""
    from retrieval.ml.splits import bin_numeric
    from retrieval.pipeline import label_matrix

    target = run.config["target"]
    classes = bin_numeric(label_matrix(image_ids, [target])[:, 0], edges=run.config["bins"])
    return classes, [f"{target} bins {run.config['bins']}"]


def _draw_map(run, x, label_values, names, numeric) -> None:
    from retrieval.ml.plots import embedding_map_png

    if numeric is not None:
        colours, title = numeric, run.config.get("graded_label") or run.config.get("target")
    elif label_values is not None and label_values.ndim == 1:
        colours, title = np.where(label_values == 1, "+".join(names), "negative"), "class"
    elif label_values is not None:
        colours = np.array([", ".join(n for n, v in zip(names, row) if v) or "none" for row in label_values])
        title = "findings"
    else:
        colours, title = np.zeros(len(x)), ""
    png = embedding_map_png(x, colours, "tsne", title=f"{run.name}: t-SNE coloured by {title}", seed=0)
    Path(ranking.run_artefact_dir(run), MAP_FILE).write_bytes(png)


def _plain(result: dict) -> dict:
    """JSON-safe numbers (NaN → None)."""
    out = {}
    for key, value in result.items():
        if isinstance(value, (np.floating, float)):
            value = None if np.isnan(value) else float(value)
        elif isinstance(value, np.integer):
            value = int(value)
        out[key] = value
    return out
