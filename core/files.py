"""Files through Django's storage API: atomic writes, and local copies for code that needs a path.

The local filesystem (`FileSystemStorage`) is the embedded default; an S3-compatible bucket
(django-storages' `S3Storage`: AWS S3, MinIO) serves deployments whose workers run on several machines
(config.settings: MEDIA_STORAGE). Every write here is all-or-nothing: locally a temporary file renamed into
place, in S3 one PUT (an object appears whole or not at all). Readers that need a file path (a DataLoader, a
FAISS or numpy reader) get a local copy, refreshed when the stored file's version (S3 ETag; locally size and
modification time) changes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage


class StorageFull(OSError):
    """The disk holding the storage is full (or over quota): the writer stops cleanly."""


def is_local(storage: Storage) -> bool:
    """Whether the storage is the local filesystem (its files have paths on this machine)."""
    return isinstance(storage, FileSystemStorage)


def save_atomic(storage: Storage, name: str, content: bytes | File) -> None:
    """Store `content` under exactly `name`, replacing what was there, all or nothing.

    Locally: written under a unique temporary name beside it, then renamed into place; a full disk raises
    StorageFull and leaves no temporary file. Elsewhere: one `storage.save` (an S3 PUT, or a multipart
    upload completed at once), which must keep the name (S3Storage with file_overwrite, as the settings set)."""
    if is_local(storage):
        write_local(Path(storage.path(name)), content)
        return
    body = ContentFile(content) if isinstance(content, bytes | bytearray | memoryview) else content
    stored = storage.save(name, body)
    if stored != name:  # a storage that renames instead of replacing: leave nothing behind, say why
        storage.delete(stored)
        raise RuntimeError(f"the storage stored {name!r} as {stored!r}: enable overwriting (AWS_S3_FILE_OVERWRITE)")


def write_local(full: Path, content: bytes | File) -> None:
    """Write a local file under a unique temporary name beside it, then rename it into place."""
    tmp = full.with_name(f"{full.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        full.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if isinstance(content, File):
                content.seek(0)
                for chunk in content.chunks():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            else:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, full)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(exc.errno, f"the disk is full ({os.strerror(exc.errno)})") from exc
        raise


def version(storage: Storage, name: str) -> str | None:
    """What identifies the stored file's current bytes (None: no such file): the S3 ETag, else size and
    modification time. One request to an S3 server."""
    if is_local(storage):
        try:
            st = os.stat(storage.path(name))
        except FileNotFoundError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}"
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:  # S3Storage: one HEAD request
        try:
            return bucket.Object(storage._normalize_name(name)).e_tag
        except Exception as exc:  # botocore's ClientError (botocore is imported only where S3 is configured)
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
    if not storage.exists(name):
        return None
    return f"{storage.size(name)}:{storage.get_modified_time(name).timestamp()}"


def local_copy(storage: Storage, name: str, target: Path, *, immutable: bool = False) -> Path | None:
    """A local path holding the stored file `name`: the file itself for a local storage, else a copy at
    `target`, downloaded when missing or (unless `immutable`: content-addressed names) when the stored
    version changed since. None when the storage has no such file."""
    if is_local(storage):
        path = Path(storage.path(name))
        return path if path.is_file() else None
    if ".." in PurePosixPath(name).parts:
        raise ValueError(f"unsafe storage name {name!r}")
    if immutable and target.is_file():
        return target
    stamp = target.with_name(f".{target.name}.version")
    current = None
    if not immutable:  # one HEAD request; an immutable file is simply fetched (GET) when there is no copy
        current = version(storage, name)
        if current is None:
            return None
        if target.is_file() and stamp.is_file() and stamp.read_text() == current:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        with storage.open(name, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.replace(tmp, target)
    except FileNotFoundError:
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    if current is not None:  # the version read before the download: a newer file is fetched again next time
        stamp.write_text(current)
    return target
