"""The comparison of every finished method of a dataset on one split (numpy only)."""

from __future__ import annotations

from collections import Counter

from core.errors import ApplicationError
from retrieval.models import Dataset
from retrieval.runs.evaluation import evaluate_run


def comparison_table(*, dataset: Dataset, split_name: str | None = None, ks=(1, 5, 10)) -> dict:
    """Rows of runs × columns of metrics (value, random expectation, p) on the test part of one split.

    SSIM runs are rows like the others, evaluated from their pairwise SSIM matrix (capped by eval_max).
    """
    runs = list(
        dataset.runs.filter(status="succeeded", split__isnull=False)
        .select_related("split")
        .order_by("created_at", "pk")
    )
    if split_name is None and runs:
        split_name = Counter(r.split.name for r in runs).most_common(1)[0][0]
    runs = [r for r in runs if r.split.name == split_name]
    columns = [f"{m}@{k}" for m in ("precision", "map", "ndcg") for k in ks]
    rows, skipped = [], []
    for run in runs:
        try:
            result = evaluate_run(run=run, ks=ks, draw_map=False)
        except ApplicationError as exc:
            skipped.append(f"{run.name}: {exc.message}")
            continue
        cells = {
            c: {"value": result[c], "random": result[f"{c}_random"], "p": result.get(f"{c}_p")}
            for c in columns
            if c in result
        }
        rows.append(
            {
                "run": run.pk,
                "name": run.name,
                "method": run.method,
                "cells": cells,
                "n_queries": result["n_queries"],
                "labels": result["labels"],
                "note": result.get("note", ""),
            }
        )
    note = "" if runs else "No finished run with a split: train or embed one first."
    return {
        "dataset": dataset.name,
        "split": split_name,
        "columns": columns,
        "rows": rows,
        "skipped": skipped,
        "note": note,
    }
