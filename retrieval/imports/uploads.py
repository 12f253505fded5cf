"""Uploaded import sources: saved where the import task can read them (outside MEDIA_ROOT), and removed again.

An upload carries every original identifier (DICOM headers, file and folder names, label columns), so it
never outlives its use (docs/importing.md#uploads):

- the import succeeded: removed (ingest);
- the import failed on the upload itself (an unreadable archive, an unusable label table: an expected
  error that a retry would meet again): removed at once, and a retry asks for a new upload;
- the import failed unexpectedly (a lost worker, a database error): kept for `import_job_retry`, at most
  `IMPORT_UPLOAD_KEEP_HOURS` after the failure (`uploads_expired_remove`, run by every import and by
  `manage.py import_uploads_purge`), and removed with the job when it (or its dataset) is deleted.

The job's `source_path` and `labels_path` (a server folder's path names folders too) are blanked when the
upload goes, and when an import from a server folder ends (`source_paths_forget`).
"""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from core.jobs import JobStatus
from retrieval.models import ImportJob


def upload_save(uploaded, *, kind: str) -> Path:
    """Stream an UploadedFile to UPLOAD_ROOT under a random name; returns its path."""
    folder = settings.UPLOAD_ROOT / kind
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(uploaded.name).suffix.lower()[:10]
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    with path.open("wb") as fh:
        for chunk in uploaded.chunks():
            fh.write(chunk)
    return path


def _uploaded_paths(job) -> list[Path]:
    """The job's sources that were uploaded for it (inside UPLOAD_ROOT); server folders are never touched."""
    if not job.remove_sources:
        return []
    out = []
    for p in (job.source_path, job.labels_path):
        path = Path(p) if p else None
        if path is not None and path.resolve().is_relative_to(settings.UPLOAD_ROOT):
            out.append(path)
    return out


def uploads_remove(job) -> None:
    """Remove the files uploaded for this import (no-op for server sources or when already gone)."""
    for path in _uploaded_paths(job):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def uploads_gone(job) -> bool:
    """True when an upload of this import was removed, or its sources forgotten (a retry then needs a new
    upload)."""
    if not job.source_path and not job.labels_path:  # every import names a source: these were forgotten
        return True
    return any(not path.exists() for path in _uploaded_paths(job))


def source_paths_forget(job) -> None:
    """Blank the job's source and label-table paths: a server path names folders (a patient's name, an MRN),
    and an upload's is of no use once it is removed. Done when an import succeeds or its upload is removed; a
    failed import keeps them for a retry until the retry window closes (`uploads_expired_remove`)."""
    job.source_path = job.labels_path = ""
    ImportJob.objects.filter(pk=job.pk).update(source_path="", labels_path="")


def uploads_expired_remove(*, now=None) -> int:
    """Remove the uploads kept for a retry of failed imports that failed over IMPORT_UPLOAD_KEEP_HOURS ago;
    the paths of such imports (uploads and server folders alike) are forgotten. Returns the uploads removed."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IMPORT_UPLOAD_KEEP_HOURS)
    n = 0
    expired = ImportJob.objects.filter(status=JobStatus.FAILED, finished_at__lt=cutoff).exclude(
        source_path="", labels_path=""
    )
    for job in expired:
        if not uploads_gone(job) and _uploaded_paths(job):
            uploads_remove(job)
            n += 1
        source_paths_forget(job)
    return n


@receiver(post_delete, sender=ImportJob)
def _uploads_remove_with_job(sender, instance, **kwargs) -> None:
    uploads_remove(instance)
