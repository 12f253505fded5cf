"""Services of model runs and splits: create, queue, resume (no torch: the worker does the work)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from core.errors import ApplicationError, Conflict
from core.jobs import JobStatus
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
    if m.embeds:  # the one default of CLI and web runs alike (settings.DATALOADER_WORKERS)
        config.setdefault("workers", settings.DATALOADER_WORKERS)
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


EVALUATION_REQUEST = "evaluation_request"  # metrics key: the options of a queued re-evaluation and its outcome


def run_evaluation_request(*, run: ModelRun, options: dict | None = None, enqueue: bool = True) -> ModelRun:
    """Queue a re-evaluation of a finished run on the CPU queue (numpy/scipy, no torch).

    The run itself is the job: a compare-and-set moves it from succeeded to pending (stage
    "evaluating"), the worker claims it like any job, reports progress and sets it back to
    succeeded; the options are kept in metrics["evaluation_request"] with the outcome, so the
    task takes only the run's id. A failed evaluation leaves the run succeeded (its model,
    embeddings and index are unaffected) with the message in `error`.
    """
    from retrieval.models import RunStage

    opts = evaluation_options(run=run, options=options)
    queued = ModelRun.objects.filter(pk=run.pk, status=JobStatus.SUCCEEDED).update(
        status=JobStatus.PENDING, stage=RunStage.EVALUATING, error="", progress_done=0, progress_total=0,
        progress_note="evaluation queued")
    if not queued:
        run.refresh_from_db()
        raise Conflict(f"Run {run.name!r} is {run.status}; only a finished run can be evaluated.")
    run.refresh_from_db()
    # Only the winner of the compare-and-set above gets here, and no worker touches a pending run's metrics.
    run.metrics = {**run.metrics, EVALUATION_REQUEST: {"options": opts, "done": False, "error": ""}}
    ModelRun.objects.filter(pk=run.pk).update(metrics=run.metrics)
    if enqueue:
        evaluation_enqueue(run=run)
    return run


def evaluation_options(*, run: ModelRun, options: dict | None = None) -> dict:
    """The evaluation options with their defaults, checked (ApplicationError), before anything is queued."""
    from retrieval.ml.metrics import AP_DEFINITIONS, GAINS

    opts = {"ks": [1, 3, 5, 10], "ap_definition": "min_k_R", "gain": "exp", "part": SplitPart.TEST,
            "labels": None, "graded": None, **(options or {})}
    if unknown := set(opts) - {"ks", "ap_definition", "gain", "part", "labels", "graded"}:
        raise ApplicationError(f"Unknown evaluation option(s): {', '.join(sorted(unknown))}.")
    if not opts["ks"] or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in opts["ks"]):
        raise ApplicationError("k must be one or more positive integers.")
    if opts["ap_definition"] not in AP_DEFINITIONS:
        raise ApplicationError(f"The mAP definition must be one of {', '.join(AP_DEFINITIONS)}.")
    if opts["gain"] not in GAINS:
        raise ApplicationError(f"The gain must be one of {', '.join(GAINS)}.")
    if opts["part"] not in SplitPart.values:
        raise ApplicationError(f"part must be one of {', '.join(SplitPart.values)}.")
    if run.split_id is None:
        raise ApplicationError("The run has no split: evaluation needs a held-out test part.")
    if run.status != JobStatus.SUCCEEDED:
        raise Conflict(f"Run {run.name!r} is {run.status}; only a finished run can be evaluated.")
    return opts


def evaluation_enqueue(*, run: ModelRun) -> None:
    """Send a run's evaluation to the CPU queue once the current transaction commits."""
    from retrieval.tasks import run_evaluate

    transaction.on_commit(lambda: run_evaluate.apply_async(kwargs={"run_id": run.pk}))


def evaluation_pending(run: ModelRun) -> bool:
    """Is the run's current job a re-evaluation (not yet finished) rather than the run's own stages?"""
    request = run.metrics.get(EVALUATION_REQUEST)
    return bool(request) and not request.get("done")


def run_worker_lost(*, run: ModelRun) -> bool:
    """A running run whose heartbeat is older than JOB_STALE_SECONDS: its worker died (killed, out of memory)."""
    from django.utils import timezone

    if run.status != JobStatus.RUNNING or run.heartbeat_at is None:
        return False
    return (timezone.now() - run.heartbeat_at).total_seconds() > settings.JOB_STALE_SECONDS


def run_resume(*, run: ModelRun) -> ModelRun:
    """Queue a failed or interrupted run again; finished stages are kept, training resumes from its checkpoint."""
    from django.conf import settings
    from django.utils import timezone

    stale = timezone.now() - timezone.timedelta(seconds=settings.JOB_STALE_SECONDS)
    resumable = Q(status=JobStatus.FAILED) | Q(status=JobStatus.CANCELLED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    if not ModelRun.objects.filter(resumable, pk=run.pk).update(status=JobStatus.PENDING, error=""):
        raise Conflict(f"Run {run.name!r} is {run.status}; only failed, cancelled or stalled runs can be resumed.")
    run.refresh_from_db()
    if evaluation_pending(run):  # the worker was lost during a re-evaluation: evaluate again
        evaluation_enqueue(run=run)
    else:
        run_enqueue(run=run)
    return run


def run_add_new_images(*, run: ModelRun, enqueue: bool = True) -> ModelRun:
    """Queue embedding + index update for images imported after the run (incremental add).

    A compare-and-set from succeeded to pending: two callers never both re-queue the run.
    """
    if not ModelRun.objects.filter(pk=run.pk, status=JobStatus.SUCCEEDED).update(status=JobStatus.PENDING):
        raise Conflict("Only a finished run can be updated with new images.")
    run.refresh_from_db()
    if enqueue:
        run_enqueue(run=run)
    return run


def images_missing_from(*, run: ModelRun, embedded_ids) -> list[int]:
    """Images of the run's dataset that have no embedding yet."""
    return list(Image.objects.filter(dataset=run.dataset).exclude(pk__in=list(embedded_ids))
                .order_by("pk").values_list("pk", flat=True))
