"""Selectors (reads) of the image collection."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from core.roles import COORDINATOR, RESEARCHER, has_role
from retrieval.models import Dataset, Image, ImportJob, Label


def dataset_list() -> QuerySet[Dataset]:
    """Datasets with their image counts."""
    return Dataset.objects.annotate(n_images=Count("images", distinct=True)).order_by("name")


def dataset_label_summary(*, dataset: Dataset) -> list[dict]:
    """Per label name: how many images carry it and its value counts (top 6), or its range when continuous."""
    rows = (
        Label.objects.filter(image__dataset=dataset)
        .values("name", "value_num", "value_text")
        .annotate(n=Count("id"))
        .order_by("name", "-n")
    )
    summary: dict[str, dict] = {}
    for r in rows:
        entry = summary.setdefault(r["name"], {"name": r["name"], "n": 0, "values": [], "numbers": []})
        entry["n"] += r["n"]
        value = r["value_num"] if r["value_num"] is not None else r["value_text"]
        entry["values"].append({"value": _fmt(value), "n": r["n"]})
        if r["value_num"] is not None:
            entry["numbers"].append(r["value_num"])
    for entry in summary.values():
        numbers = entry.pop("numbers")
        if len(entry["values"]) > 6 and len(numbers) == len(entry["values"]):
            entry["range"] = (_fmt(round(min(numbers), 4)), _fmt(round(max(numbers), 4)))
            entry["values"] = []
        else:
            entry["values"] = entry["values"][:6]
    return list(summary.values())


def image_list(*, dataset: Dataset, label: str = "", value: str = "") -> QuerySet[Image]:
    """Images of a dataset with labels prefetched, optionally filtered by one label's value."""
    qs = dataset.images.prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
    if label:
        lf = Label.objects.filter(name=label)
        if value != "":
            try:
                lf = lf.filter(value_num=float(value))
            except ValueError:
                lf = lf.filter(value_text=value)
        qs = qs.filter(id__in=lf.values("image_id"))
    return qs.order_by("source_name")


def image_visible_to(*, user, image: Image) -> bool:
    """Coordinators and researchers see every image by its id; readers never do.

    Readers load the images of their cases by case number and key (`annotations.selectors.reader_image_url`):
    answering `/images/<pk>/…` for them would let them match ids (import order: same patient adjacent,
    folders by class, candidates created in rank order) to what they see by fetching ids in turn.
    """
    return has_role(user, COORDINATOR, RESEARCHER)


def import_jobs_for(*, dataset: Dataset) -> QuerySet[ImportJob]:
    return dataset.imports.order_by("-created_at")


def _fmt(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
