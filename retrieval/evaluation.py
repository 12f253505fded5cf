"""Offline retrieval evaluation of a model run over one part of its split (numpy only, no torch).

Relevance: for a binary task, the same class (positive vs negative); otherwise images sharing a
positive finding among the evaluation labels ("No Finding" images are relevant to each other).
Graded relevance comes from a numeric label (paper 000's patient weight; the demo's CTR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from readerstudy.errors import ApplicationError
from retrieval import ranking
from retrieval.models import Label, ModelRun, SplitPart

MAP_FILE = "embedding_map.png"


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
                 draw_map: bool = True) -> dict:
    """Retrieval metrics (each beside its random baseline and a t-test) over a part of the run's split."""
    from retrieval.ml.metrics import evaluate_retrieval
    from retrieval.pipeline import label_matrix
    from retrieval.runs import split_image_ids

    if run.split is None:
        raise ApplicationError("The run has no split: evaluation needs a held-out test part.")
    ids, vectors = ranking.run_vectors(run=run)
    position = {int(i): n for n, i in enumerate(ids)}
    query_ids = [i for i in split_image_ids(split=run.split, part=part) if i in position]
    if len(query_ids) < 3:
        raise ApplicationError(f"The {part} part has {len(query_ids)} embedded images; at least 3 are needed.")
    x = vectors[[position[i] for i in query_ids]]
    names = labels or eval_label_names(run)
    label_values = _label_values(run, query_ids, names) if names else None
    if not labels and run.config.get("task") == "regression" and run.config.get("bins"):
        label_values, names = _binned_target(run, query_ids)
    graded = graded or graded_label_name(run)
    numeric = None
    if graded:
        numeric = label_matrix(query_ids, [graded])[:, 0]
        if np.isnan(numeric).any():
            keep = ~np.isnan(numeric)
            x, numeric = x[keep], numeric[keep]
            label_values = label_values[keep] if label_values is not None else None
            query_ids = [q for q, k in zip(query_ids, keep) if k]
    result = evaluate_retrieval(x, label_values, numeric, ks=tuple(ks), metric=run.config.get("metric", "cosine"),
                                ap_definition=ap_definition, gain_kind=gain)
    result.update({"part": part, "labels": names, "graded_label": graded or "", "ks": list(ks)})
    if draw_map:
        _draw_map(run, x, label_values, names, numeric)
    return _plain(result)


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
