"""A run's artefacts (model weights, embeddings, FAISS index, overlays, embedding map) where every machine
finds them.

Each run works in its folder (`ranking.run_artefact_dir`, under ARTEFACT_ROOT). With the local default
that folder is the store itself and everything here is a no-op apart from path arithmetic. With
MEDIA_STORAGE=s3 the bucket (storage `artefacts`, under `runs/<run id>/`) is the store and each machine's
folder is its working copy: a stage writes its files there and `publish`es them (one PUT each: a reader
sees the old file or the new one, whole); a reader `fetch`es a file, which downloads it when the stored
version (its ETag) differs from the copy's, so search workers load a run's index from the bucket and reload
it when it is rebuilt.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages

from core import files
from retrieval.models import ModelRun


def store():
    return storages["artefacts"]


def shared() -> bool:
    """Whether the artefacts live in a shared storage (S3) rather than in ARTEFACT_ROOT itself."""
    return not files.is_local(store())


def storage_name(run: ModelRun, rel: str) -> str:
    if ".." in PurePosixPath(rel).parts:
        raise ValueError(f"unsafe artefact name {rel!r}")
    return f"runs/{run.pk}/{rel}"


def run_folder(run: ModelRun) -> Path:
    """The run's folder on this machine: the folder recorded in the run (local storage), or this machine's
    working copy under its ARTEFACT_ROOT (shared storage: the recorded folder is the last worker's)."""
    if run.artefact_dir and not shared():
        return Path(run.artefact_dir)
    return settings.ARTEFACT_ROOT / "runs" / str(run.pk)


def local_path(run: ModelRun, rel: str) -> Path:
    return run_folder(run) / rel


def publish(run: ModelRun, *rels: str) -> None:
    """Store the run's local files `rels` (paths relative to its folder) in the shared storage, in order
    (name the file readers look for first — an index's meta.json — last)."""
    if not shared():
        return
    for rel in rels:
        with open(local_path(run, rel), "rb") as fh:
            files.save_atomic(store(), storage_name(run, rel), File(fh, name=rel))


def write(run: ModelRun, rel: str, data: bytes) -> Path:
    """Write one artefact, all or nothing, in the run's folder and (shared) in the storage."""
    path = local_path(run, rel)
    files.write_local(path, data)
    publish(run, rel)
    return path


def fetch(run: ModelRun, rel: str) -> Path:
    """The local path of the run's artefact `rel`, brought up to date from the shared storage first (one
    request to the storage; a download only when the stored file changed). The path does not exist when the
    run has no such artefact."""
    path = local_path(run, rel)
    if shared():
        files.local_copy(store(), storage_name(run, rel), path)
    return path


def fetch_stored(run: ModelRun, rel: str) -> Path | None:
    """The local path of the run's artefact `rel` as `fetch` gives it, or None when the store has no such file
    (with a shared storage, a copy left on this machine of a file since removed from the store is not used)."""
    if shared():
        return files.local_copy(store(), storage_name(run, rel), local_path(run, rel))
    path = local_path(run, rel)
    return path if path.is_file() else None


def remove(run: ModelRun, *rels: str) -> None:
    """Remove the run's artefacts `rels` from the shared storage (this machine's copies are the caller's)."""
    if shared():
        for rel in rels:
            store().delete(storage_name(run, rel))


def exists(run: ModelRun, rel: str) -> bool:
    if shared():
        return store().exists(storage_name(run, rel))
    return local_path(run, rel).is_file()


def any_file(run: ModelRun, folder: str, suffix: str) -> bool:
    """Whether the run's artefact folder `folder` holds a file ending in `suffix`."""
    if shared():
        try:
            return any(f.endswith(suffix) for f in store().listdir(storage_name(run, folder))[1])
        except FileNotFoundError:
            return False
    path = local_path(run, folder)
    return path.is_dir() and next(path.glob(f"*{suffix}"), None) is not None
