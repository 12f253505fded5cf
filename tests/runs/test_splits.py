"""Splits by patient: no patient in two parts, reproducible from the seed."""

import pytest

from core.errors import ApplicationError
from retrieval.models import Image, SplitMember
from retrieval.runs.splits import split_create


def test_split_keeps_patients_together_and_covers_all_images(phantom_dataset):
    split = split_create(dataset=phantom_dataset, seed=1)
    parts = {}
    for member in SplitMember.objects.filter(split=split).select_related("image"):
        parts.setdefault(member.image.patient_pseudo_id, set()).add(member.part)
    assert all(len(p) == 1 for p in parts.values())
    assert SplitMember.objects.filter(split=split).count() == Image.objects.filter(dataset=phantom_dataset).count()
    counts = {part: SplitMember.objects.filter(split=split, part=part).count() for part in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > counts["test"] > 0


def test_same_seed_same_split(phantom_dataset):
    a = split_create(dataset=phantom_dataset, name="a", seed=5)
    b = split_create(dataset=phantom_dataset, name="b", seed=5)
    as_dict = lambda s: dict(s.members.values_list("image_id", "part"))  # noqa: E731
    assert as_dict(a) == as_dict(b)


def test_bad_fractions_are_refused(phantom_dataset):
    with pytest.raises(ApplicationError, match="adding up to 1"):
        split_create(dataset=phantom_dataset, fractions=(0.5, 0.5, 0.5))
