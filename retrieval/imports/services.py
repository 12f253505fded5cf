"""Services (writes) of the image collection: datasets, and imports recorded and queued.

The import itself runs in a Celery task (`retrieval.tasks.import_run`, body: retrieval.imports.ingest).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.db import transaction

from core.errors import ApplicationError
from core.jobs import JobStatus, job_retry
from retrieval.imports import dicomweb
from retrieval.imports import labels as label_tables
from retrieval.imports.uploads import uploads_gone
from retrieval.models import Dataset, ImportJob, LabelFormat
from retrieval.tasks import import_run

log = logging.getLogger(__name__)


def dataset_create(*, name: str, description: str = "", created_by=None) -> Dataset:
    """Create an empty dataset (names are unique)."""
    name = name.strip()
    if not name:
        raise ApplicationError("A dataset needs a name.")
    if Dataset.objects.filter(name=name).exists():
        raise ApplicationError(f"A dataset named {name!r} already exists.")
    return Dataset.objects.create(name=name, description=description, created_by=created_by)


def import_job_create(
    *,
    dataset: Dataset,
    source_path: str | Path = "",
    labels_path: str | Path = "",
    label_format: str = LabelFormat.GENERIC,
    created_by=None,
    remove_sources: bool = False,
    allow_free_text: bool = False,
    enqueue: bool = True,
) -> ImportJob:
    """Record an import and queue it for the worker once the transaction commits.

    With enqueue=False the caller runs `import_job_run` itself (`import_images --sync`). Free-text
    label columns are imported only with `allow_free_text` (see `label_table_preview`).
    """
    if label_format not in LabelFormat.values:
        raise ApplicationError(f"Unknown label format {label_format!r}; use one of {', '.join(LabelFormat.values)}.")
    if not source_path and not labels_path:
        raise ApplicationError("Give a folder or archive of images, a label table, or both.")
    for what, p in (("Image source", source_path), ("Label table", labels_path)):
        if p and not Path(p).exists():
            raise ApplicationError(f"{what} {p} does not exist on the server.")
    job = ImportJob.objects.create(
        dataset=dataset,
        created_by=created_by,
        source_path=str(source_path),
        labels_path=str(labels_path),
        label_format=label_format,
        remove_sources=remove_sources,
        allow_free_text=allow_free_text,
    )
    if enqueue:
        _import_enqueue(job)
    return job


def label_table_preview(
    *,
    labels_path: str | Path,
    label_format: str = LabelFormat.GENERIC,
    allow_free_text: bool = False,
    uid_keys: bool = False,
) -> label_tables.LabelTablePreview:
    """What an import of this label table would do with each column (key, label, dropped as an identifier,
    refused as free text…), with a few sample values of the kept ones: the preview a coordinator confirms
    before anything is stored. Reads the table only; an unusable table is an ApplicationError.

    `uid_keys`: the table of a PACS import, whose generic table may name images by a SOPInstanceUID,
    SeriesInstanceUID or StudyInstanceUID column (the most specific one is its key, dicomweb.uid_key_column)."""
    if label_format not in LabelFormat.values:
        raise ApplicationError(f"Unknown label format {label_format!r}; use one of {', '.join(LabelFormat.values)}.")
    try:
        key = dicomweb.uid_key_column(labels_path) if uid_keys and label_format == LabelFormat.GENERIC else None
        with Path(labels_path).open("rb") as stream:  # read as a stream: a 200,000-row table is not held
            return label_tables.label_table_columns(
                stream, label_format, filename_column=key, allow_free_text=allow_free_text
            )
    except label_tables.LabelTableError as exc:
        raise ApplicationError(f"The label table cannot be used: {exc}") from None


def import_job_retry(*, job: ImportJob, enqueue: bool = True) -> ImportJob:
    """Queue a failed import again, from the same (kept) sources; images it stored before are not duplicated.

    Refused when its uploads were removed (it failed on them, or the retry window passed): upload again.
    """
    if job.status == JobStatus.FAILED and uploads_gone(job):
        raise ApplicationError(
            f"Import {job.pk}'s uploaded files were removed, or its source paths forgotten, after it failed (they "
            "hold patient identifiers): upload them again (or name the server folder again) in a new import."
        )
    job = job_retry(job, what=f"Import {job.pk}")
    if enqueue:
        _import_enqueue(job)
    return job


def _import_enqueue(job: ImportJob) -> None:
    transaction.on_commit(lambda: import_run.apply_async(kwargs={"job_id": job.pk}))
