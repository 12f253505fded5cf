"""Services of model runs and splits: create, queue, resume (no torch: the worker does the work)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from readerstudy.errors import ApplicationError, Conflict
from readerstudy.jobs import JobStatus
from retrieval.methods import config_validate, method_get
from retrieval.models import Dataset, Image, ModelRun, Split, SplitMember, SplitPart


def split_create(*, dataset: Dataset, name: str = "default", seed: int = 0,
                 fractions: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> Split:
    """Split a dataset's images by patient into train/val/test (images without a patient stand alone)."""
    from retrieval.ml.splits import split_by_patient

    if Split.objects.filter(dataset=dataset, name=name).exists():
        raise ApplicationError(f"Dataset {dataset.name!r} already has a split named {name!r}.")
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


def run_create(*, dataset: Dataset, name: str, method: str, config: dict | None = None, split: Split | None = None,
               created_by=None, enqueue: bool = True) -> ModelRun:
    """Record a model run (validated configuration) and queue it on the GPU queue after commit."""
    name = name.strip()
    if not name:
        raise ApplicationError("A run needs a name.")
    if ModelRun.objects.filter(dataset=dataset, name=name).exists():
        raise ApplicationError(f"Dataset {dataset.name!r} already has a run named {name!r}.")
    if split is not None and split.dataset_id != dataset.pk:
        raise ApplicationError("The split belongs to another dataset.")
    m = method_get(method)
    if m.trains and split is None:
        raise ApplicationError("Training needs a split (train/val/test by patient): create one first.")
    if not dataset.images.exists():
        raise ApplicationError(f"Dataset {dataset.name!r} has no images.")
    config = config_validate(method, config or {})
    if method == "rating_metric":
        config["characteristics"] = _checked_characteristics(dataset, config.get("characteristics"))
    run = ModelRun.objects.create(dataset=dataset, name=name, method=method, split=split,
                                  config=config, created_by=created_by)
    if enqueue:
        run_enqueue(run=run)
    return run


def _checked_characteristics(dataset: Dataset, asked: list[str] | None) -> list[str]:
    """Paper 004: the rated characteristics a rating-metric run learns from (default: all of the dataset's)."""
    from retrieval.rating_runs import rating_characteristics

    known = rating_characteristics(dataset)
    unknown = [n for n in asked or [] if n not in known]
    if unknown:
        raise ApplicationError(f"No ratings of {', '.join(map(repr, unknown))} in {dataset.name!r}; "
                               f"rated characteristics: {', '.join(known)}.")
    return list(asked) if asked else known


def run_enqueue(*, run: ModelRun) -> None:
    """Send the run to the GPU queue once the current transaction commits."""
    from retrieval.tasks import run_execute

    transaction.on_commit(lambda: run_execute.apply_async(kwargs={"run_id": run.pk}))


def run_resume(*, run: ModelRun) -> ModelRun:
    """Queue a failed or interrupted run again; finished stages are kept, training resumes from its checkpoint."""
    from django.conf import settings
    from django.utils import timezone

    stale = timezone.now() - timezone.timedelta(seconds=settings.JOB_STALE_SECONDS)
    resumable = Q(status=JobStatus.FAILED) | Q(status=JobStatus.CANCELLED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    if not ModelRun.objects.filter(resumable, pk=run.pk).update(status=JobStatus.PENDING, error=""):
        raise Conflict(f"Run {run.name!r} is {run.status}; only failed, cancelled or stalled runs can be resumed.")
    run.refresh_from_db()
    run_enqueue(run=run)
    return run


def run_add_new_images(*, run: ModelRun) -> ModelRun:
    """Queue embedding + index update for images imported after the run (incremental add)."""
    if run.status != JobStatus.SUCCEEDED:
        raise Conflict("Only a finished run can be updated with new images.")
    ModelRun.objects.filter(pk=run.pk).update(status=JobStatus.PENDING)
    run.refresh_from_db()
    run_enqueue(run=run)
    return run


def images_missing_from(*, run: ModelRun, embedded_ids) -> list[int]:
    """Images of the run's dataset that have no embedding yet."""
    return list(Image.objects.filter(dataset=run.dataset).exclude(pk__in=list(embedded_ids))
                .order_by("pk").values_list("pk", flat=True))
