"""Readers' rating vectors of a dataset's images as paper 004's rating sets (numpy; no torch import).

A rating table (generic CSV with a `rater` column) stores one `Rating` per image and reader: a dict
characteristic → number. Rating-based metric learning and its evaluation need, per image, the
(readers, characteristics) matrix of those vectors in one fixed characteristic order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from core.errors import ApplicationError
from retrieval.models import Dataset, Rating


def rating_characteristics(dataset: Dataset) -> list[str]:
    """The rated characteristics of a dataset (numeric in every rating that has them), sorted."""
    names: set[str] = set()
    for values in Rating.objects.filter(image__dataset=dataset).values_list("values", flat=True).iterator():
        names.update(k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if not names:
        raise ApplicationError(
            f"Dataset {dataset.name!r} has no reader ratings: import a rating table first (a generic CSV "
            "with a 'rater' column, one row per image and reader, one numeric column per characteristic)."
        )
    return sorted(names)


def rating_sets(image_ids: list[int], names: list[str]) -> tuple[list[int], list[np.ndarray]]:
    """(ids, sets) for the images among `image_ids` that have complete ratings of every characteristic.

    sets[i] is a float32 (readers, len(names)) matrix; a reader who left a characteristic blank is
    left out of that image's set (the set distance needs whole vectors). Order follows `image_ids`.
    """
    by_image: dict[int, list[list[float]]] = defaultdict(list)
    for image_id, values in (
        Rating.objects.filter(image_id__in=image_ids).order_by("image_id", "rater").values_list("image_id", "values")
    ):
        if all(isinstance(values.get(n), (int, float)) and not isinstance(values.get(n), bool) for n in names):
            by_image[image_id].append([float(values[n]) for n in names])
    ids = [i for i in image_ids if by_image.get(i)]
    return ids, [np.asarray(by_image[i], dtype=np.float32) for i in ids]
