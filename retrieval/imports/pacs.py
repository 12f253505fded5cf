"""Services (writes) of PACS imports: an ImportJob with its DicomwebSource, checked against the PACS and queued.

The import itself is the ordinary import task (retrieval.tasks.import_run); its body retrieves the
instances first (retrieval.imports.dicomweb.retrieved).
"""

from __future__ import annotations

from pathlib import Path

from django.db import transaction

from core.errors import ApplicationError
from retrieval.imports import dicomweb
from retrieval.models import Dataset, DicomwebSource, ImportJob, LabelFormat
from retrieval.tasks import import_run


def dicomweb_import_create(
    *,
    dataset: Dataset,
    endpoint: str,
    selections: list[str],
    labels_path: str | Path = "",
    label_format: str = LabelFormat.GENERIC,
    allow_free_text: bool = False,
    created_by=None,
    remove_sources: bool = False,
    allow_url: bool = False,
    enqueue: bool = True,
) -> ImportJob:
    """Record an import of studies ("STUDYUID") or series ("STUDYUID/SERIESUID") from a DICOMweb endpoint.

    The PACS is asked first whether it has every chosen study and series: an endpoint that cannot be reached,
    refuses the credentials or lacks one of them raises ApplicationError and nothing is created. Only the
    endpoint's name (a URL with allow_url, the management command) and the UIDs are stored.
    """
    if label_format not in LabelFormat.values:
        raise ApplicationError(f"Unknown label format {label_format!r}; use one of {', '.join(LabelFormat.values)}.")
    if labels_path and not Path(labels_path).exists():
        raise ApplicationError(f"Label table {labels_path} does not exist on the server.")
    try:
        parsed = []
        for value in selections:
            selection = dicomweb.parse_selection(value)
            if selection not in parsed:
                parsed.append(selection)
        if not parsed:
            raise dicomweb.DicomwebError("Choose at least one study or series.")
        whole = {p["study"] for p in parsed if not p["series"]}
        parsed = [p for p in parsed if not p["series"] or p["study"] not in whole]  # a series of a chosen study
        target = dicomweb.endpoint_resolve(endpoint, allow_url=allow_url)
        dicomweb.plan(target, parsed)
    except dicomweb.DicomwebError as exc:
        raise ApplicationError(str(exc)) from None
    with transaction.atomic():
        job = ImportJob.objects.create(
            dataset=dataset,
            created_by=created_by,
            source_path=f"{dicomweb.SOURCE_PREFIX}{target.name}",
            labels_path=str(labels_path),
            label_format=label_format,
            allow_free_text=allow_free_text,
            remove_sources=remove_sources,
        )
        DicomwebSource.objects.create(job=job, endpoint=target.name, selections=parsed)
    if enqueue:
        transaction.on_commit(lambda: import_run.apply_async(kwargs={"job_id": job.pk}))
    return job
