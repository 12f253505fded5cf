"""Uploaded import sources: saved where the import task can read them (outside MEDIA_ROOT), and removed again.

An upload carries every original identifier (DICOM headers, file and folder names, label columns), so it
never outlives its use (docs/importing.md#uploads):

- the import succeeded: removed (ingest);
- the import failed on the upload itself (an unreadable archive, an unusable label table: an expected
  error that a retry would meet again): removed at once, and a retry asks for a new upload;
- the import failed unexpectedly (a lost worker, a database error): kept for `import_job_retry`, at most
  `IMPORT_UPLOAD_KEEP_HOURS` after the failure (`uploads_expired_remove`, run by every import and by
  `manage.py import_uploads_purge`), and removed with the job when it (or its dataset) is deleted.
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

#: Upload kinds of imports, kept under their own name in a random folder.
IMPORT_KINDS = ("archives", "labels")


def upload_save(uploaded, *, kind: str) -> Path:
    """Stream an UploadedFile to UPLOAD_ROOT/kind/<random folder>/<its own name> (imports); returns its path.

    The file keeps the name it was uploaded under (made safe: no folders, no control characters, at most
    100 characters), so that the import report names a single uploaded image, an archive or a label table
    as the user knows it, not by the server's random name."""
    if kind in IMPORT_KINDS:
        folder, name = settings.UPLOAD_ROOT / kind / uuid.uuid4().hex, _safe_name(uploaded.name)
    else:  # a search's query image: removed by its task, never reported
        folder, name = settings.UPLOAD_ROOT / kind, f"{uuid.uuid4().hex}{Path(uploaded.name).suffix.lower()[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("wb") as fh:
        for chunk in uploaded.chunks():
            fh.write(chunk)
    return path


def _safe_name(name: str) -> str:
    base = "".join(c for c in str(name).replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable()).strip(" .")
    if len(base) > 100:
        suffix = Path(base).suffix[:10]
        base = base[: 100 - len(suffix)] + suffix
    return base or "upload"


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
        parent = path.resolve().parent  # upload_save's random folder, empty once its file is gone
        if parent.parent.parent == settings.UPLOAD_ROOT.resolve() and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()


def uploads_gone(job) -> bool:
    """True when an upload of this import was removed (a retry then needs a new upload)."""
    return any(not path.exists() for path in _uploaded_paths(job))


def uploads_expired_remove(*, now=None) -> int:
    """Remove the uploads kept for a retry of failed imports that failed over IMPORT_UPLOAD_KEEP_HOURS ago."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IMPORT_UPLOAD_KEEP_HOURS)
    n = 0
    for job in ImportJob.objects.filter(status=JobStatus.FAILED, remove_sources=True, finished_at__lt=cutoff):
        if not uploads_gone(job) and _uploaded_paths(job):
            uploads_remove(job)
            n += 1
    return n


@receiver(post_delete, sender=ImportJob)
def _uploads_remove_with_job(sender, instance, **kwargs) -> None:
    uploads_remove(instance)
