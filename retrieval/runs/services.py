"""Services of model runs and their evaluations: create, queue, resume, retry (no torch: the worker does the work)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError, Conflict
from core.jobs import PARTS_CLAIMANT, JobStatus, job_retry
from retrieval.ml.metrics import AP_DEFINITIONS, GAINS
from retrieval.models import Dataset, Evaluation, ModelRun, Split, SplitPart
from retrieval.runs.methods import config_validate, method_get
from retrieval.runs.ratings import rating_characteristics
from retrieval.tasks import evaluation_execute, run_execute


def run_create(
    *,
    dataset: Dataset,
    name: str,
    method: str,
    config: dict | None = None,
    split: Split | None = None,
    created_by=None,
    enqueue: bool = True,
) -> ModelRun:
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
    run = ModelRun.objects.create(
        dataset=dataset, name=name, method=method, split=split, config=config, created_by=created_by
    )
    if enqueue:
        run_enqueue(run=run)
    return run


def _checked_characteristics(dataset: Dataset, asked: list[str] | None) -> list[str]:
    """Paper 004: the rated characteristics a rating-metric run learns from (default: all of the dataset's)."""
    known = rating_characteristics(dataset)
    unknown = [n for n in asked or [] if n not in known]
    if unknown:
        raise ApplicationError(
            f"No ratings of {', '.join(map(repr, unknown))} in {dataset.name!r}; "
            f"rated characteristics: {', '.join(known)}."
        )
    return list(asked) if asked else known


def run_enqueue(*, run: ModelRun) -> None:
    """Send the run to the GPU queue once the current transaction commits."""
    transaction.on_commit(lambda: run_execute.apply_async(kwargs={"run_id": run.pk}))


def evaluation_request(
    *, run: ModelRun, options: dict | None = None, created_by=None, enqueue: bool = True
) -> Evaluation:
    """Queue a re-evaluation of a finished run (its own job, on the CPU queue: numpy/scipy, no torch).

    The options are checked before anything is recorded. One evaluation of a run at a time: a pending
    or live one makes this a Conflict; one whose worker was lost (no heartbeat for JOB_STALE_SECONDS)
    is recorded as failed first, so a lost worker never blocks the run."""
    opts = evaluation_options(run=run, options=options)
    stale = timezone.now() - timezone.timedelta(seconds=settings.JOB_STALE_SECONDS)
    Evaluation.objects.filter(run=run, status=JobStatus.RUNNING, heartbeat_at__lt=stale).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        error=f"The worker was lost (no heartbeat for {settings.JOB_STALE_SECONDS} s): evaluate again.",
    )
    with transaction.atomic():
        ModelRun.objects.select_for_update().filter(pk=run.pk).first()  # serialise requests of one run
        if run.evaluations.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists():
            raise Conflict(f"Run {run.name!r} already has an evaluation queued or running.")
        evaluation = Evaluation.objects.create(run=run, options=opts, created_by=created_by)
    if enqueue:
        evaluation_enqueue(evaluation=evaluation)
    return evaluation


def evaluation_options(*, run: ModelRun, options: dict | None = None) -> dict:
    """The evaluation options with their defaults, checked (ApplicationError), before anything is queued."""
    opts = {
        "ks": [1, 3, 5, 10],
        "ap_definition": "min_k_R",
        "gain": "exp",
        "part": SplitPart.TEST,
        "labels": None,
        "graded": None,
        **(options or {}),
    }
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


def evaluation_retry(*, evaluation: Evaluation, enqueue: bool = True) -> Evaluation:
    """Queue a failed evaluation again, with its recorded options."""
    evaluation = job_retry(evaluation, what="This evaluation")
    if enqueue:
        evaluation_enqueue(evaluation=evaluation)
    return evaluation


def evaluation_enqueue(*, evaluation: Evaluation) -> None:
    """Send an evaluation to the CPU queue once the current transaction commits."""
    transaction.on_commit(lambda: evaluation_execute.apply_async(kwargs={"evaluation_id": evaluation.pk}))


def run_worker_lost(*, run: ModelRun) -> bool:
    """A running run whose heartbeat is older than JOB_STALE_SECONDS: its worker died (killed, out of memory)."""
    if run.status != JobStatus.RUNNING or run.heartbeat_at is None or run.claimed_by == PARTS_CLAIMANT:
        return False  # (waiting for its shards, which may wait behind other runs: core.fanout)
    return (timezone.now() - run.heartbeat_at).total_seconds() > settings.JOB_STALE_SECONDS


def run_resume(*, run: ModelRun) -> ModelRun:
    """Queue a failed, interrupted or pending run again; finished stages are kept, training resumes from its
    checkpoint. A pending run's task is sent again (a duplicate message is harmless: the claim runs a job once)."""
    stale = timezone.now() - timezone.timedelta(seconds=settings.JOB_STALE_SECONDS)
    resumable = (
        Q(status=JobStatus.FAILED)
        | Q(status=JobStatus.CANCELLED)
        | Q(status=JobStatus.PENDING)
        | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    )
    if not ModelRun.objects.filter(resumable, pk=run.pk).update(
        status=JobStatus.PENDING, error="", workers_lost=0, enqueued_at=None
    ):
        raise Conflict(
            f"Run {run.name!r} is {run.status}; only failed, cancelled, pending or stalled runs can be resumed."
        )
    run.refresh_from_db()
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
