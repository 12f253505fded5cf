"""A run's data as the database holds it: rendition paths, labels as matrices, training targets (no torch).

Used by the worker's stages and by the evaluation (which also runs in the web process: the comparison table).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from core import files
from retrieval.ml.splits import binary_task
from retrieval.models import Image, Label, ModelRun


def run_set(run: ModelRun, **fields) -> None:
    for key, value in fields.items():
        setattr(run, key, value)
    ModelRun.objects.filter(pk=run.pk).update(**fields)


def image_paths(image_ids: list[int]) -> list[str]:
    """Local paths of the images' renditions, in order, for the DataLoader: the files themselves in the local
    media folder, or copies of the stored files on this machine (MEDIA_STORAGE=s3: under
    STORAGE_CACHE_ROOT/media, downloaded once, DOWNLOAD_THREADS at a time; rendition names are
    content-addressed)."""
    rows = dict(Image.objects.filter(pk__in=image_ids).values_list("pk", "rendition"))
    names = [rows[i] for i in image_ids]
    if files.is_local(default_storage):
        return [str(media_local_copy(name)) for name in names]
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:  # requests to the bucket wait on the network
        return [str(path) for path in pool.map(media_local_copy, names)]


DOWNLOAD_THREADS = 8


def media_local_copy(name: str) -> Path:
    """A local path holding the media file `name` (FileNotFoundError when the storage has none)."""
    path = files.local_copy(default_storage, name, settings.STORAGE_CACHE_ROOT / "media" / name, immutable=True)
    if path is None:
        raise FileNotFoundError(f"the media file {name!r} is missing from the storage")
    return path


def label_matrix(image_ids: list[int], names: list[str]) -> np.ndarray:
    """(n, len(names)) float matrix of numeric label values; NaN where an image lacks the label."""
    out = np.full((len(image_ids), len(names)), np.nan, dtype=np.float64)
    row = {pk: i for i, pk in enumerate(image_ids)}
    col = {n: j for j, n in enumerate(names)}
    for pk, name, value in Label.objects.filter(image_id__in=image_ids, name__in=names).values_list(
        "image_id", "name", "value_num"
    ):
        if value is not None:
            out[row[pk], col[name]] = value
    return out


def training_targets(run: ModelRun, image_ids: list[int], *, undersample: bool):
    """(ids, targets) of a part for the run's task (paper 000's label definitions)."""
    cfg = run.config
    if cfg["task"] == "binary":
        names = list(dict.fromkeys([*cfg["positive"], *cfg["negative"]]))
        values = np.nan_to_num(label_matrix(image_ids, names), nan=0.0) == 1
        idx, y = binary_task(
            {n: values[:, j] for j, n in enumerate(names)},
            cfg["positive"],
            cfg["negative"],
            undersample=undersample,
            seed=cfg["seed"],
        )
        return [image_ids[i] for i in idx], np.asarray(y, dtype=np.float32).reshape(-1, 1)
    if cfg["task"] == "multilabel":
        values = label_matrix(image_ids, cfg["labels"])
        return image_ids, (np.nan_to_num(values, nan=0.0) == 1).astype(np.float32)
    values = label_matrix(image_ids, [cfg["target"]])[:, 0]
    keep = ~np.isnan(values)
    return [i for i, k in zip(image_ids, keep) if k], values[keep].astype(np.float32).reshape(-1, 1)


def images_missing_from(*, run: ModelRun, embedded_ids) -> list[int]:
    """Images of the run's dataset that have no embedding yet."""
    return list(
        Image.objects.filter(dataset=run.dataset)
        .exclude(pk__in=list(embedded_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
