"""Celery tasks of the image collection: thin wrappers that take primary keys and return the job row
(config.celery turns a failed one into an honest JobFailed outcome)."""

from core.tasks import cpu_task, gpu_task
from retrieval import services


@cpu_task
def import_run(*, job_id: int):
    """Import a folder or archive (and its label table) into a dataset."""
    return services.import_job_run(job_id=job_id)


@gpu_task
def run_execute(*, run_id: int):
    """Train / embed / index / evaluate a model run (GPU queue; CPU when no GPU is present)."""
    from retrieval.pipeline import run_execute as execute

    return execute(run_id=run_id)


@cpu_task
def run_evaluate(*, run_id: int):
    """Re-evaluate a finished run with the options recorded on it (CPU queue: numpy/scipy, no torch)."""
    from retrieval.evaluation import run_evaluation_execute

    return run_evaluation_execute(run_id=run_id)


@cpu_task
def search_execute(*, search_id: int):
    """Embed an uploaded query image with the run's model and search the run's index."""
    from retrieval.search import search_request_execute

    return search_request_execute(search_id=search_id)
