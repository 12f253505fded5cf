"""Uploaded import sources: saved where the import task can read them (outside MEDIA_ROOT), and removed again.

An upload carries every original identifier (DICOM headers, file and folder names, label columns), so it
never outlives its use (docs/importing.md#uploads):

- the import succeeded: removed (ingest);
- the import failed on the upload itself (an unreadable archive, an unusable label table: an expected
  error that a retry would meet again): removed at once, and a retry asks for a new upload;
- the import failed unexpectedly (a lost worker, a database error): kept for `import_job_retry`, at most
  `IMPORT_UPLOAD_KEEP_HOURS` after the failure (`uploads_expired_remove`, run by every import and by
  `manage.py import_uploads_purge`), and removed with the job when it (or its dataset) is deleted;
- the label table's column preview was cancelled: removed at once (`upload_discard`); never confirmed:
  removed `IMPORT_UPLOAD_KEEP_HOURS` (at least an hour) after the upload (`uploads_expired_remove`: files
  no import names).

The job's `source_path` and `labels_path` (a server folder's path names folders too) are blanked when the
import succeeds or its upload goes, and when a failed import's retry window closes (`source_paths_forget`).
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


def upload_resolve(name: str) -> Path | None:
    """The upload `kind/file` (as `upload_name` gives it) if it is a file inside UPLOAD_ROOT, else None."""
    root = settings.UPLOAD_ROOT.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root or not path.is_file():
        return None
    return path


def upload_name(path: Path | str) -> str:
    """An upload's path relative to UPLOAD_ROOT (`labels/<random>.csv`), to hand back to `upload_resolve`."""
    return Path(path).resolve().relative_to(settings.UPLOAD_ROOT.resolve()).as_posix()


def upload_discard(*paths: Path | str) -> None:
    """Remove uploads that no import will use (a cancelled preview); paths outside UPLOAD_ROOT are left alone."""
    root = settings.UPLOAD_ROOT.resolve()
    for p in paths:
        if p and Path(p).resolve().is_relative_to(root) and Path(p).is_file():
            _discard(Path(p))


def _discard(path: Path) -> None:
    """Remove an uploaded file, and the random folder upload_save made for it once it is empty."""
    path.unlink(missing_ok=True)
    parent = path.resolve().parent
    if parent.parent.parent == settings.UPLOAD_ROOT.resolve() and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


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
        else:
            _discard(path)


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
    # A preview waits at least an hour for its confirmation, whatever the retry window.
    hours = max(settings.IMPORT_UPLOAD_KEEP_HOURS, 1)
    return n + _unclaimed_uploads_remove((now or timezone.now()) - timedelta(hours=hours))


def _unclaimed_uploads_remove(cutoff) -> int:
    """Remove uploads that no import names (a column preview never confirmed) older than `cutoff`."""
    root = settings.UPLOAD_ROOT
    if not root.is_dir():
        return 0
    named = {
        Path(p).resolve()
        for paths in ImportJob.objects.filter(remove_sources=True).values_list("source_path", "labels_path")
        for p in paths
        if p
    }
    n = 0
    for kind in ("labels", "archives"):
        # kind/<random folder>/<name> (upload_save), or kind/<random name> (uploads made before)
        for path in [*(root / kind).glob("*"), *(root / kind).glob("*/*")] if (root / kind).is_dir() else ():
            if path.is_file() and path.resolve() not in named and path.stat().st_mtime < cutoff.timestamp():
                _discard(path)
                n += 1
    return n


@receiver(post_delete, sender=ImportJob)
def _uploads_remove_with_job(sender, instance, **kwargs) -> None:
    uploads_remove(instance)
