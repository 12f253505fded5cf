"""Celery tasks of the image collection: thin wrappers that take primary keys and return the job row
(core.tasks turns a failed one into an honest JobFailed outcome).

The bodies of GPU-queue and embedding tasks import torch, so they are imported inside the task: that is
the process boundary (the web process imports this module to queue tasks and must never load torch).
"""

from core.jobs import JobStatus
from core.tasks import cpu_task, gpu_task
from retrieval.imports.ingest import import_chunk_run, import_job_run
from retrieval.models import EmbedShard, Evaluation, ImportChunk, ImportJob, ModelRun, SearchRequest, WeightsFetch
from retrieval.runs.evaluation import evaluation_execute as evaluate


@cpu_task(job=ImportJob)
def import_run(*, job_id: int):
    """Import a folder or archive (and its label table) into a dataset."""
    return import_job_run(job_id=job_id, chunked=True)


@cpu_task(job=ImportChunk)
def import_chunk(*, part_id: int):
    """Import one chunk of an import's planned files (core.fanout); the last chunk queues the import's finish."""
    return import_chunk_run(part_id=part_id)


@gpu_task(job=ModelRun)
def run_execute(*, run_id: int):
    """Train / embed / index / evaluate a model run (GPU queue; CPU when no GPU is present)."""
    from retrieval.runs.stages import run_execute as execute  # worker only: imports torch

    return execute(run_id=run_id)


@gpu_task(job=EmbedShard)
def embed_shard(*, part_id: int):
    """Embed one shard of a run's images (core.fanout); the last shard queues the run again to build its index."""
    from retrieval.runs.stages import embed_shard_execute  # worker only: imports torch

    return embed_shard_execute(part_id=part_id)


@cpu_task(job=Evaluation)
def evaluation_execute(*, evaluation_id: int):
    """Re-evaluate a finished run with the options of an Evaluation (CPU queue: numpy/scipy, no torch)."""
    return evaluate(evaluation_id=evaluation_id)


@cpu_task
def run_evaluate(*, run_id: int):
    """Messages queued by a version before Evaluation jobs (the run itself was the job): the run's pending
    evaluation, which the upgrade migration made an Evaluation row, is carried out."""
    pending = Evaluation.objects.filter(run_id=run_id, status=JobStatus.PENDING).order_by("pk").last()
    return evaluate(evaluation_id=pending.pk) if pending else None


@cpu_task(job=SearchRequest)
def search_execute(*, search_id: int):
    """Embed an uploaded query image with the run's model and search the run's index."""
    from retrieval.runs.search_job import search_request_execute  # worker only: imports torch

    return search_request_execute(search_id=search_id)


@gpu_task(job=WeightsFetch)
def weights_fetch(*, fetch_id: int):
    """Download a model's pretrained weights into the Hugging Face cache (GPU queue: the runs' cache)."""
    from retrieval.runs.weights_job import weights_fetch_execute  # worker only: imports torch

    return weights_fetch_execute(fetch_id=fetch_id)
