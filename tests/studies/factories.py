"""Study test data: image rows with a class label, model runs with embeddings written to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.utils import timezone

from core.jobs import JobStatus
from retrieval.models import Dataset, Image, Label, ModelRun, Split, SplitMember


def make_images(dataset: Dataset, classes: list[str], *, label: str = "finding") -> list[Image]:
    """One image row per class entry (no files: the builders and services need none)."""
    images = []
    for n, cls in enumerate(classes):
        image = Image.objects.create(
            dataset=dataset,
            source_name=f"img/{n:03d}.png",
            source_format="png",
            width=8,
            height=8,
            content_hash=f"{dataset.pk}-{n:060d}",
            original=f"o/{n}.png",
            rendition=f"r/{n}.png",
            thumbnail=f"t/{n}.png",
        )
        if cls is not None:
            Label.objects.create(image=image, name=label, value_text=cls)
        images.append(image)
    return images


def make_run(
    dataset: Dataset,
    folder: Path,
    image_ids: list[int],
    vectors: np.ndarray,
    *,
    name: str = "vit",
    method: str = "timm",
    metric: str = "cosine",
) -> ModelRun:
    """A succeeded run whose artefacts (embeddings.npy, image_ids.npy) are written in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(folder / "embeddings.npy", vectors)
    np.save(folder / "image_ids.npy", np.asarray(image_ids, dtype=np.int64))
    return ModelRun.objects.create(
        dataset=dataset,
        name=name,
        method=method,
        config={"metric": metric},
        status=JobStatus.SUCCEEDED,
        artefact_dir=str(folder),
        n_embedded=len(image_ids),
        finished_at=timezone.now(),
    )


def make_split(dataset: Dataset, parts: dict[int, str], name: str = "default") -> Split:
    split = Split.objects.create(dataset=dataset, name=name, seed=0, fractions=[0.6, 0.3, 0.1])
    SplitMember.objects.bulk_create(SplitMember(split=split, image_id=i, part=p) for i, p in parts.items())
    return split


def answer(study, reader, case=None):
    """An Answer row made directly through the ORM (simulates a reader's submission)."""
    from annotations.models import Answer

    assignment = study.assignments.get(reader=reader)
    return Answer.objects.create(
        assignment=assignment, case=case or study.cases.first(), submitted_at=timezone.now(), active_ms=1000
    )
