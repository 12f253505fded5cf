"""Splits of a dataset's images by patient into train/val/test (numpy + the database; no torch)."""

from __future__ import annotations

from django.db import transaction

from core.errors import ApplicationError
from retrieval.ml.splits import split_by_patient
from retrieval.models import Dataset, Split, SplitMember, SplitPart

MAX_SEED = 2**32 - 1


def split_create(
    *, dataset: Dataset, name: str = "default", seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.3, 0.1)
) -> Split:
    """Split a dataset's images by patient into train/val/test (images without a patient stand alone)."""
    if Split.objects.filter(dataset=dataset, name=name).exists():
        raise ApplicationError(f"Dataset {dataset.name!r} already has a split named {name!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ApplicationError(f"A split's seed is a whole number from 0 to {MAX_SEED}.")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ApplicationError("fractions must be three non-negative numbers adding up to 1.")
    images = list(dataset.images.order_by("pk").values_list("pk", "patient_pseudo_id"))
    if not images:
        raise ApplicationError(f"Dataset {dataset.name!r} has no images to split.")
    # Patients numbered in order of their first image, not by pseudonym: pseudonyms depend on the dataset's
    # secret, so ordering by them would give a different split of the same collection on every re-import.
    first_seen: dict[str, int] = {}
    patients = [first_seen.setdefault(p or f"image-{pk}", len(first_seen)) for pk, p in images]
    parts = split_by_patient(patients, fractions=fractions, seed=seed)
    with transaction.atomic():
        split = Split.objects.create(dataset=dataset, name=name, seed=seed, fractions=list(fractions))
        SplitMember.objects.bulk_create(
            SplitMember(split=split, image_id=pk, part=str(part)) for (pk, _), part in zip(images, parts)
        )
    return split


def split_image_ids(*, split: Split, part: str) -> list[int]:
    """Image ids of one part of a split, sorted."""
    if part not in SplitPart.values:
        raise ApplicationError(f"part must be one of {', '.join(SplitPart.values)}.")
    return list(split.members.filter(part=part).order_by("image_id").values_list("image_id", flat=True))
