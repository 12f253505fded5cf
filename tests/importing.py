"""Run an import inline (the same service body the worker runs) and return the fresh job."""

from retrieval.imports import ingest, services
from retrieval.models import Dataset


def run_import(*, source="", labels="", fmt="generic", dataset=None, name="ds"):
    dataset = dataset or Dataset.objects.filter(name=name).first() or services.dataset_create(name=name)
    job = services.import_job_create(
        dataset=dataset, source_path=source, labels_path=labels, label_format=fmt, enqueue=False
    )
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def report_for(job, file):
    return [r for r in job.report if r["file"] == file]
