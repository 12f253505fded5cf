"""Run an import inline (the same service body the worker runs) and return the fresh job."""

from retrieval.imports import ingest, services
from retrieval.imports.names import path_pseudonym
from retrieval.models import Dataset


def run_import(*, source="", labels="", fmt="generic", dataset=None, name="ds"):
    dataset = dataset or Dataset.objects.filter(name=name).first() or services.dataset_create(name=name)
    job = services.import_job_create(
        dataset=dataset, source_path=source, labels_path=labels, label_format=fmt, enqueue=False
    )
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def stored_name(dataset, path: str) -> str:
    """The name an imported file is stored and reported under: its path's pseudonym under the dataset's key."""
    return path_pseudonym(dataset.pseudonym_key, path)


def report_for(job, file):
    """The report lines of one imported file (by its original path), of the label table (`ingest.LABEL_TABLE`)
    or of the source as a whole (`ingest.SOURCE`)."""
    target = file if file in (ingest.LABEL_TABLE, ingest.SOURCE) else stored_name(job.dataset, file)
    return [r for r in job.report if r["file"] == target]


def image_named(path: str, *, name: str = "ds"):
    """The image imported from `path` (its original relative path) into the dataset `name`."""
    from retrieval.models import Image

    dataset = Dataset.objects.get(name=name)
    return Image.objects.get(dataset=dataset, source_name=stored_name(dataset, path))
