"""One job's work spread over many workers: a job fans out into parts, each its own task; the last part to finish
queues the job again for its finishing step (docs/architecture.md#fan-out).

A job's body that has planned more work than one task should do calls `parts_fan_out(job, part_model, n)`: in
one transaction the job's parts (rows of a `core.jobs.TrackedPart` model, numbered 0…n-1) are created pending and
the job is marked as waiting for them (it stays *running*, claimed by `PARTS_CLAIMANT`), then each part's task is
sent to its queue. The body returns; the runner (core.jobs.job_run) leaves the job running.

Each part is an ordinary job of its own kind: claimed with a compare-and-set, taken over when its worker dies
(redelivery, or the requeue of core.tasks), so a part is never done twice at once and always done once more
after a loss. Its body reports with `part_progress`, which also writes the job's progress (the sum of its
parts': one progress bar) and heartbeat. `part_run` runs a part and then:

- succeeded, and no part of the job is left unfinished: the job is put back to pending with one conditional
  UPDATE (of two parts finishing at once, one wins) and its own task is sent: the job's body runs again, finds
  `parts_state(job) == "done"` and finishes (merges the parts' results). The job row is the outbox: a
  continuation whose message was lost is sent by the requeue like any pending job;
- failed: the job fails with the part's message, and its parts still pending are cancelled.

A job waiting for its parts whose heartbeat is older than JOB_STALE_SECONDS (its parts wait in a busy queue, or
the last part died between its end and the job's update) is sent again by the requeue; its body finds its parts
unfinished and waits again (`parts_wait`), or all done and finishes. A retried job (failed, back to pending)
plans afresh: `parts_fan_out` replaces its old parts.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Exists, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.jobs import PARTS_CLAIMANT, PARTS_DONE, JobStatus, TrackedJob, TrackedPart, job_progress, job_run

log = logging.getLogger(__name__)


def _kind(model):
    from core.tasks import JOB_KINDS  # core.tasks is loaded with the settings, this module with the models

    return next(k for k in JOB_KINDS if k.model is model)


def _send(model, pk: int) -> None:
    from core.errors import BrokerUnavailable

    kind = _kind(model)
    try:
        kind.task.apply_async(kwargs={kind.kwarg: pk})
    except BrokerUnavailable:  # the row stays pending, unsent: the requeue sends it once the broker is back
        log.warning("%s %s: the broker is unreachable; the requeue sends it later", model.__name__, pk)


def parent_model(part_model: type[TrackedPart]) -> type[TrackedJob]:
    return part_model._meta.get_field("parent").related_model


def parts_fan_out(job: TrackedJob, part_model: type[TrackedPart], count: int, *, total: int, note: str) -> None:
    """Replace the job's parts by `count` pending ones, mark the job as waiting for them (progress 0 of `total`) and
    send their tasks. Call it from the job's body, which then returns."""
    now = timezone.now()
    with transaction.atomic():
        part_model.objects.filter(parent=job).delete()
        part_model.objects.bulk_create(part_model(parent=job, index=i) for i in range(count))
        type(job).objects.filter(pk=job.pk).update(
            claimed_by=PARTS_CLAIMANT, heartbeat_at=now, progress_done=0, progress_total=total, progress_note=note
        )
    job.claimed_by, job.progress_done, job.progress_total, job.progress_note = PARTS_CLAIMANT, 0, total, note
    pks = part_model.objects.filter(parent=job).order_by("index").values_list("pk", flat=True)
    for pk in pks:
        _send(part_model, pk)
    log.info("%s %s: %d parts queued", type(job).__name__, job.pk, count)


def parts_state(job: TrackedJob, part_model: type[TrackedPart]) -> str:
    """ "none" (never fanned out), "waiting" (parts pending or running), "done" (all succeeded) or "failed"."""
    statuses = set(part_model.objects.filter(parent=job).values_list("status", flat=True))
    if not statuses:
        return "none"
    if statuses & {JobStatus.FAILED, JobStatus.CANCELLED}:
        return "failed"
    if statuses & {JobStatus.PENDING, JobStatus.RUNNING}:
        return "waiting"
    return "done"


def parts_failure(job: TrackedJob, part_model: type[TrackedPart]) -> str:
    """The message of the job's first failed part ('' if none)."""
    failed = part_model.objects.filter(parent=job, status=JobStatus.FAILED).order_by("index").first()
    return failed.error if failed else ""


def parts_wait(job: TrackedJob, part_model: type[TrackedPart]) -> None:
    """The job, taken over while its parts still run (core.jobs.job_claim), waits for them again; if the last one
    finished meanwhile (its news found the job claimed), the job is queued for its finishing step here."""
    type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        claimed_by=PARTS_CLAIMANT, heartbeat_at=timezone.now(), progress_note="waiting for its parts"
    )
    job.claimed_by = PARTS_CLAIMANT
    parts_settle(part_model, job.pk)


def _sum_of_parts(model: type[TrackedPart], field: str):
    parts = model.objects.filter(parent=OuterRef("pk")).values("parent").annotate(s=Sum(field)).values("s")
    return Coalesce(Subquery(parts, output_field=IntegerField()), 0)


def part_progress(
    part: TrackedPart,
    *,
    done: int | None = None,
    total: int | None = None,
    note: str | None = None,
    sums: dict[str, int] | None = None,
) -> None:
    """The part's progress (core.jobs.job_progress), and its job's: the sum of its parts' done, and a heartbeat.
    `sums`: counters of the part (e.g. images imported) written with it, and summed into the job's fields of
    the same names."""
    job_progress(part, done=done, total=total, note=note)
    model = type(part)
    if sums:
        model.objects.filter(pk=part.pk).update(**sums)
    fields = {
        "heartbeat_at": timezone.now(),
        "progress_done": _sum_of_parts(model, "progress_done"),
        **{name: _sum_of_parts(model, name) for name in sums or {}},
    }
    if note is not None:
        fields["progress_note"] = note[:300]
    parent_model(model).objects.filter(pk=part.parent_id, claimed_by=PARTS_CLAIMANT).update(**fields)


def part_run(model: type[TrackedPart], pk: int, body, *, expected: tuple[type[BaseException], ...] = ()):
    """Run part `pk` (core.jobs.job_run), then settle its job: finish it once all parts are in, fail it with the
    message of a failed part. Returns the part row (None when it was not claimed)."""
    part = job_run(model, pk, body, expected=expected)
    row = model.objects.filter(pk=pk).values("parent", "status", "error").first()
    if row is None:  # the job was deleted (or planned afresh) meanwhile
        return part
    if row["status"] == JobStatus.FAILED:  # by its body, or by its claim after too many lost workers
        parts_fail(model, row["parent"], error=row["error"])
    else:  # succeeded, or a redelivery of a part already done: its job may still wait for this news
        parts_settle(model, row["parent"])
    return part


def parts_settle(model: type[TrackedPart], parent_id: int) -> bool:
    """Queue the job again for its finishing step if it waits and none of its parts is unfinished; True if this
    call did (one conditional UPDATE: of two parts finishing at once, exactly one wins)."""
    job_model = parent_model(model)
    unfinished = model.objects.filter(parent=OuterRef("pk")).exclude(status=JobStatus.SUCCEEDED)
    won = (
        job_model.objects.filter(pk=parent_id, status=JobStatus.RUNNING, claimed_by=PARTS_CLAIMANT)
        .exclude(Exists(unfinished))
        .update(status=JobStatus.PENDING, claimed_by=PARTS_DONE, enqueued_at=None, progress_note="finishing")
    )
    if won:
        _send(job_model, parent_id)
    return bool(won)


def parts_fail(model: type[TrackedPart], parent_id: int, *, error: str) -> None:
    """Fail the waiting job with a part's message; its parts not started yet are cancelled."""
    now = timezone.now()
    job_model = parent_model(model)
    failed = job_model.objects.filter(pk=parent_id, status=JobStatus.RUNNING, claimed_by=PARTS_CLAIMANT).update(
        status=JobStatus.FAILED, error=error, finished_at=now, claimed_by=""
    )
    model.objects.filter(parent_id=parent_id, status=JobStatus.PENDING).update(
        status=JobStatus.CANCELLED, finished_at=now, error="another part of the job failed"
    )
    if failed:
        log.warning("%s %s failed: a part failed: %s", job_model.__name__, parent_id, error)
