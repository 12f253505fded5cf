"""Services of weights fetches: record one and queue it on the `gpu` queue (the queue of the runs, whose Hugging
Face cache the weights must land in). The body is retrieval.runs.weights_job (worker only)."""

from __future__ import annotations

from django.db import transaction

from core.errors import ApplicationError
from core.jobs import job_retry
from retrieval.models import WeightsFetch
from retrieval.tasks import weights_fetch


def weights_fetch_create(*, model_name: str, created_by=None, enqueue: bool = True) -> WeightsFetch:
    name = model_name.strip()
    if not name or len(name) > 300 or any(c.isspace() for c in name):
        raise ApplicationError("Name one model: a timm model, hf-hub:ORG/REPO or open_clip:hf-hub:ORG/REPO.")
    job = WeightsFetch.objects.create(model_name=name, created_by=created_by)
    if enqueue:
        transaction.on_commit(lambda: weights_fetch.apply_async(kwargs={"fetch_id": job.pk}))
    return job


def weights_fetch_retry(*, job: WeightsFetch, enqueue: bool = True) -> WeightsFetch:
    """Queue a failed fetch again (the hub back in reach, WEIGHTS_DOWNLOAD turned on, the files copied by hand)."""
    job = job_retry(job, what=f"Weights fetch {job.pk}")
    if enqueue:
        transaction.on_commit(lambda: weights_fetch.apply_async(kwargs={"fetch_id": job.pk}))
    return job
