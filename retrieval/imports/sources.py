"""Enumerate the files of an import source (a folder or a .zip) safely, without Django.

Zip members with absolute paths, `..` components, drive letters or links are refused with a
message; oversized members are refused before they are read (zip bombs). Nothing is
extracted to disk: a member's bytes are read when the importer asks for them.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class SourceError(ValueError):
    """The source as a whole cannot be read (missing, not a folder or zip, corrupt archive)."""


@dataclass(frozen=True)
class SourceEntry:
    name: str  # POSIX relative path inside the source
    size: int
    read: Callable[[], bytes]
    problem: str = ""  # non-empty: refused, with the reason


_SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] in _SKIP_NAMES


def unsafe_member_reason(name: str) -> str:
    """Why a zip member name is unsafe to use as a path, or '' when it is fine."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive refused"
    if "\\" in name:
        return "backslash in archive path refused"
    if ".." in PurePosixPath(name).parts:
        return "'..' in archive path refused"
    return ""


def iter_zip(path: Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """The members of a zip archive (directories and hidden files skipped)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{path.name}: not a readable zip archive ({exc})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > max_members:
            raise SourceError(f"{path.name}: {len(members)} files exceed the limit of {max_members}")
        for info in members:
            name = info.filename
            reason = unsafe_member_reason(name)
            mode = info.external_attr >> 16
            if not reason and stat.S_ISLNK(mode):
                reason = "symbolic link in archive refused"
            if not reason and _skipped(name):
                continue
            if not reason and info.file_size > max_bytes:
                reason = f"{info.file_size:,} bytes uncompressed exceed the limit of {max_bytes:,}"
            yield SourceEntry(name=name, size=info.file_size, read=_zip_reader(path, name, max_bytes), problem=reason)


def _zip_reader(path: Path, name: str, max_bytes: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive, archive.open(name) as fh:
            data = fh.read(max_bytes + 1)  # the declared size can lie
        if len(data) > max_bytes:
            raise SourceError(f"more than {max_bytes:,} bytes uncompressed")
        return data

    return read


def iter_folder(root: Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """The files below a folder, links that leave the folder refused."""
    root = root.resolve()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            name = full.relative_to(root).as_posix()
            if _skipped(name):
                continue
            count += 1
            if count > max_members:
                raise SourceError(f"{root.name}: more than {max_members} files")
            reason = ""
            if not full.resolve().is_relative_to(root):
                reason = "link pointing outside the imported folder refused"
            size = full.stat().st_size if not reason else 0
            if not reason and size > max_bytes:
                reason = f"{size:,} bytes exceed the limit of {max_bytes:,}"
            yield SourceEntry(name=name, size=size, read=full.read_bytes, problem=reason)


def iter_source(path: str | Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """Dispatch on the kind of source: a folder, a .zip, or a single image file."""
    path = Path(path)
    if path.is_dir():
        return iter_folder(path, max_bytes=max_bytes, max_members=max_members)
    if not path.is_file():
        raise SourceError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        return iter_zip(path, max_bytes=max_bytes, max_members=max_members)
    return iter([SourceEntry(name=path.name, size=path.stat().st_size, read=path.read_bytes)])
