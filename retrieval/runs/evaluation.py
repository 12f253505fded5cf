"""Offline retrieval evaluation of a model run over one part of its split (numpy only, no torch).

Relevance: for a binary task, the same class (positive vs negative); otherwise images sharing a
positive finding among the evaluation labels ("No Finding" images are relevant to each other).
Graded relevance comes from a numeric label (paper 000's patient weight; the demo's CTR).
Embedding runs rank by their embeddings; SSIM runs (no embeddings) by the pairwise 1 − SSIM matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from django.db import transaction

from core.errors import ApplicationError
from core.jobs import job_progress, job_run
from retrieval.ml.metrics import evaluate_retrieval
from retrieval.ml.plots import embedding_map_png
from retrieval.ml.splits import bin_numeric
from retrieval.models import Evaluation, Label, ModelRun, SplitPart
from retrieval.runs import artefacts, ranking
from retrieval.runs.data import label_matrix
from retrieval.runs.splits import split_image_ids

log = logging.getLogger(__name__)
MAP_FILE = "embedding_map.png"
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
    names = (
        Label.objects.filter(image__dataset=run.dataset, value_num__in=[0.0, 1.0])
        .values_list("name", flat=True)
        .distinct()
    )
    numeric_other = set(
        Label.objects.filter(image__dataset=run.dataset, value_num__isnull=False)
        .exclude(value_num__in=[0.0, 1.0])
        .values_list("name", flat=True)
        .distinct()
    )
    return sorted(set(names) - numeric_other)


def graded_label_name(run: ModelRun) -> str | None:
    cfg = run.config
    return cfg.get("graded_label") or (cfg.get("target") if cfg.get("task") == "regression" else None)


def evaluate_run(
    *,
    run: ModelRun,
    ks=(1, 3, 5, 10),
    ap_definition: str = "min_k_R",
    gain: str = "exp",
    part: str = SplitPart.TEST,
    labels: list[str] | None = None,
    graded: str | None = None,
    draw_map: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Retrieval metrics (each beside its random baseline and a t-test) over a part of the run's split.

    Embedding runs rank by their embeddings. SSIM runs have none: they rank by the pairwise 1 − SSIM
    matrix of the part's images (O(n²) comparisons, `progress(done, total)` after each row), on at
    most config "eval_max" images, a seeded random sample when the part is larger (see `note`).
    """
    if run.split is None:
        raise ApplicationError("The run has no split: evaluation needs a held-out test part.")
    ssim = run.method == "ssim"
    query_ids = split_image_ids(split=run.split, part=part)
    ranker = ranking.ranker_for(run)
    if not ssim:
        query_ids = [i for i in query_ids if ranker.has(i)]
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
            query_ids, label_values, numeric = _take(
                np.flatnonzero(~np.isnan(numeric)), query_ids, label_values, numeric
            )
        if len(query_ids) < 3:
            raise ApplicationError(
                f"Only {len(query_ids)} images of the {part} part have a value of {graded!r}; "
                f"at least 3 are needed for graded relevance."
            )
    if ssim:
        n_part = len(query_ids)
        keep, note = _ssim_sample(run, n_part, part)
        query_ids, label_values, numeric = _take(keep, query_ids, label_values, numeric)
        x, metric = ranker.matrix(query_ids, progress), "precomputed"
    else:
        x, metric = ranker.rows(query_ids), ranking.run_metric(run)
    result = evaluate_retrieval(
        x, label_values, numeric, ks=tuple(ks), metric=metric, ap_definition=ap_definition, gain_kind=gain
    )
    result.update({"part": part, "labels": names, "graded_label": graded or "", "ks": list(ks)})
    if ssim:
        result.update({"metric": "ssim", "n_part_images": n_part, "note": note})
    elif draw_map:  # t-SNE of embeddings; an SSIM run has none to draw
        _draw_map(run, x, label_values, names, numeric)
    return _plain(result)


def evaluation_execute(*, evaluation_id: int) -> Evaluation | None:
    """Worker body of a queued re-evaluation (services.evaluation_request): the core runner claims the
    Evaluation row, evaluates its run with its options, stores the result on the row and as the run's
    shown metrics. A second delivery finds it claimed or finished and does nothing; a failure is
    recorded on the Evaluation (the run stays finished: its model and index are unaffected)."""
    return job_run(Evaluation, evaluation_id, _evaluation_body)


def _evaluation_body(evaluation: Evaluation) -> None:
    run = ModelRun.objects.select_related("dataset", "split").get(pk=evaluation.run_id)
    opts = evaluation.options
    job_progress(evaluation, done=0, total=1, note=f"evaluating the {opts.get('part', 'test')} part")

    def progress(done: int, total: int) -> None:  # SSIM runs: pairs compared
        job_progress(evaluation, done=done, total=total, note=f"SSIM pairs {done}/{total}")

    result = evaluate_run(run=run, progress=progress, **opts)
    Evaluation.objects.filter(pk=evaluation.pk).update(result=result)
    with transaction.atomic():  # the run's shown metrics: read-modify-write under the row lock
        locked = ModelRun.objects.select_for_update().get(pk=run.pk)
        ModelRun.objects.filter(pk=run.pk).update(
            metrics={**locked.metrics, "retrieval": result, "retrieval_note": "", "evaluation": evaluation.pk}
        )
    job_progress(evaluation, done=1, total=1, note="evaluated")


def _take(
    keep: np.ndarray, query_ids: list[int], label_values: np.ndarray | None, numeric: np.ndarray | None
) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """The kept queries (indices) with their label rows and numeric values."""
    return (
        [query_ids[i] for i in keep],
        None if label_values is None else label_values[keep],
        None if numeric is None else numeric[keep],
    )


def _ssim_sample(run: ModelRun, n: int, part: str) -> tuple[np.ndarray, str]:
    """Indices of the images an SSIM run is evaluated on: all, or a sorted seeded sample of config eval_max."""
    cap = run.config.get("eval_max", SSIM_EVAL_MAX)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 3:
        raise ApplicationError(f"eval_max must be an integer ≥ 3, got {cap!r}.")
    if n <= cap:
        return np.arange(n), ""
    seed = int(run.config.get("seed", 0))
    keep = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
    return keep, (
        f"SSIM compares every pair of images: evaluated on a random sample of {cap} of the {n} "
        f"{part} images (eval_max {cap}, seed {seed})."
    )


def _label_values(run: ModelRun, image_ids: list[int], names: list[str]) -> np.ndarray:
    values = np.nan_to_num(label_matrix(image_ids, names), nan=0.0) == 1
    if run.config.get("task") == "binary":
        return values.any(axis=1).astype(int)  # one class vector: positive vs negative
    return values.astype(int)


def _binned_target(run: ModelRun, image_ids: list[int]) -> tuple[np.ndarray, list[str]]:
    """Paper 000's weight classes: the regression target binned (e.g. < 150, 150–200, > 200 lbs)."""
    target = run.config["target"]
    classes = bin_numeric(label_matrix(image_ids, [target])[:, 0], edges=run.config["bins"])
    return classes, [f"{target} bins {run.config['bins']}"]


def _draw_map(run, x, label_values, names, numeric) -> None:
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
    artefacts.write(run, MAP_FILE, png)


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
