"""Upload searches: an uploaded query image is recorded as a SearchRequest and embedded by the worker
(`search_execute` task, body in retrieval.runs.search_job), so the web process never imports torch.
A collection image is searched in the web process from its stored embedding (retrieval.runs.index)."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction

from core.errors import ApplicationError, Conflict
from core.jobs import JobStatus, job_retry
from retrieval.models import ModelRun, SearchRequest
from retrieval.tasks import search_execute


def search_request_create(
    *, run: ModelRun, upload_path: Path, k: int, created_by=None, enqueue: bool = True
) -> SearchRequest:
    """Record the search for an uploaded query image and queue its embedding on the worker (after commit)."""
    if run.status != JobStatus.SUCCEEDED or run.method == "ssim":
        raise ApplicationError("Upload search needs a finished embedding run.")
    req = SearchRequest.objects.create(run=run, upload_path=str(upload_path), k=k, created_by=created_by)
    if enqueue:
        _search_enqueue(req)
    return req


def search_request_retry(*, req: SearchRequest, enqueue: bool = True) -> SearchRequest:
    """Queue a failed upload search again (its uploaded image is kept after an unexpected failure)."""
    if not Path(req.upload_path).is_file():
        raise Conflict("The uploaded image of this search is gone: upload it again.")
    req = job_retry(req, what="This search")
    if enqueue:
        _search_enqueue(req)
    return req


def _search_enqueue(req: SearchRequest) -> None:
    transaction.on_commit(lambda: search_execute.apply_async(kwargs={"search_id": req.pk}))
