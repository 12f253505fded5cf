"""Enumerate the files of an import source (a folder or a .zip) safely, without Django.

Zip members with absolute paths, `..` components, drive letters or links are refused with a
message; oversized members are refused before they are read, and an archive's total
uncompressed size has a budget, checked from the headers before any member is read and again
while the members are streamed (zip bombs). Nothing is extracted to disk: a member's bytes are
read when the importer asks for them, from the one open archive (`open_source`), so reading
every member of a 100,000-member zip is linear, not quadratic.

Names that cannot be stored or shown are refused per file, never for the whole source: over
`MAX_NAME_CHARS` characters, control characters (NUL), bytes that are not UTF-8 (folders) or a
zip member flagged UTF-8 whose name is not; so are a second zip member of the same name and
anything in a folder that is not a regular file (a FIFO would block the reader for ever).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Image.source_name holds at most this many characters.
MAX_NAME_CHARS = 500


class SourceError(ValueError):
    """The source as a whole cannot be read (missing, not a folder or zip, corrupt archive, over budget)."""


@dataclass(frozen=True)
class SourceEntry:
    name: str  # POSIX relative path inside the source
    size: int
    read: Callable[[], bytes]
    problem: str = ""  # non-empty: refused, with the reason
    #: The first n bytes, without reading (or inflating) the rest; None: use read().
    head: Callable[[int], bytes] | None = None
    #: Where `open_entries` finds the entry again: a folder's relative path, an archive member's index.
    locator: str | int | None = None


_SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] in _SKIP_NAMES


def printable_name(name: str) -> str:
    """A name as it can be stored and shown: control characters and undecodable bytes written as \\xNN."""
    out = []
    for c in name:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 32 or code == 127 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(c)
    return "".join(out)


def name_problem(name: str) -> str:
    """Why a file name cannot be stored, or '' when it can."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "file name is not valid UTF-8: refused (rename the file)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character (NUL, newline…) in the file name: refused (rename the file)"
    if len(name) > MAX_NAME_CHARS:
        return f"path of {len(name):,} characters exceeds the limit of {MAX_NAME_CHARS}: refused (shorten it)"
    return ""


def unsafe_member_reason(name: str) -> str:
    """Why a zip member name is unsafe to use as a path, or '' when it is fine."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive refused"
    if "\\" in name:
        return "backslash in archive path refused"
    if ".." in PurePosixPath(name).parts:
        return "'..' in archive path refused"
    return ""


class _Utf8FlagFix:
    """A file wrapper for zipfile: central-directory records flagged UTF-8 whose name is not UTF-8 lose the flag
    (zipfile would refuse the whole archive with UnicodeDecodeError); their cp437 names are kept in `bad`."""

    def __init__(self, fh):
        self._fh = fh
        self.bad: set[str] = set()
        self.active = True  # only while zipfile reads the central directory, never a member's bytes

    def read(self, n=-1):
        data = self._fh.read(n)
        return self._fix(data) if self.active and data[:4] == b"PK\x01\x02" else data

    def _fix(self, data: bytes) -> bytes:
        out, pos = bytearray(data), 0
        while pos + 46 <= len(out) and out[pos : pos + 4] == b"PK\x01\x02":
            flags = struct.unpack_from("<H", out, pos + 8)[0]
            n_name, n_extra, n_comment = struct.unpack_from("<HHH", out, pos + 28)
            raw = bytes(out[pos + 46 : pos + 46 + n_name])
            if flags & 0x800:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    struct.pack_into("<H", out, pos + 8, flags & ~0x800)
                    self.bad.add(raw.decode("cp437"))
            pos += 46 + n_name + n_extra + n_comment
        return bytes(out)

    def __getattr__(self, name):
        return getattr(self._fh, name)


class _Archive:
    """One open zip archive whose members are read in turn, under a total uncompressed budget."""

    def __init__(self, path: Path, *, max_bytes: int, max_total_bytes: int | None):
        self.path, self.max_bytes, self.max_total_bytes = path, max_bytes, max_total_bytes
        self._fh = path.open("rb")
        self.fixer = _Utf8FlagFix(self._fh)
        try:
            self.zip = zipfile.ZipFile(self.fixer)
            self.fixer.active = False
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self._fh.close()
            raise SourceError(f"{path.name}: not a readable zip archive ({exc})") from None
        self._counted: set[int] = set()
        self.streamed = 0

    def reader(self, index: int, info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            with self.zip.open(info) as fh:  # by ZipInfo: two members of one name are two files
                data = fh.read(self.max_bytes + 1)  # the declared size can lie
            if len(data) > self.max_bytes:
                raise SourceError(f"more than {self.max_bytes:,} bytes uncompressed")
            if index not in self._counted:
                self._counted.add(index)
                self.streamed += len(data)
                if self.max_total_bytes is not None and self.streamed > self.max_total_bytes:
                    raise SourceError(
                        f"{self.path.name}: more than {self.max_total_bytes:,} bytes uncompressed in total "
                        "(IMPORT_MAX_ARCHIVE_BYTES): the rest of the archive was not read"
                    )
            return data

        return read

    def head(self, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
        def read_head(n: int) -> bytes:
            with self.zip.open(info) as fh:
                return fh.read(n)

        return read_head

    def close(self) -> None:
        self.zip.close()
        self._fh.close()


def _iter_zip(archive: _Archive, *, max_members: int) -> Iterator[SourceEntry]:
    name_of = archive.path.name
    infos = archive.zip.infolist()  # names and sizes only (the central directory), never contents
    files = sum(1 for m in infos if not m.is_dir())
    if files > max_members:
        raise SourceError(f"{name_of}: {files} files exceed the limit of {max_members}")
    declared = sum(m.file_size for m in infos if not m.is_dir())
    if archive.max_total_bytes is not None and declared > archive.max_total_bytes:
        raise SourceError(
            f"{name_of}: {declared:,} bytes uncompressed in total exceed the limit of "
            f"{archive.max_total_bytes:,} (IMPORT_MAX_ARCHIVE_BYTES)"
        )
    seen: set[str] = set()
    for index, info in enumerate(infos):
        if info.is_dir():
            continue
        name = info.filename
        reason = "file name is not valid UTF-8: refused (rename the file)" if name in archive.fixer.bad else ""
        reason = reason or unsafe_member_reason(name) or name_problem(name)
        mode = info.external_attr >> 16
        if not reason and stat.S_ISLNK(mode):
            reason = "symbolic link in archive refused"
        if not reason and _skipped(name):
            continue
        if not reason and name in seen:
            reason = "an earlier member of the archive has the same name: only the first one is read"
        seen.add(name)
        if not reason and info.file_size > archive.max_bytes:
            reason = f"{info.file_size:,} bytes uncompressed exceed the limit of {archive.max_bytes:,}"
        yield SourceEntry(
            name=name,
            size=info.file_size,
            read=archive.reader(index, info),
            problem=reason,
            head=archive.head(info),
            locator=index,
        )


def iter_zip(path: Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """The members of a zip archive (directories and hidden files skipped); the archive stays open while the
    entries are in use (prefer `open_source`, which closes it)."""
    return _iter_zip(_Archive(path, max_bytes=max_bytes, max_total_bytes=None), max_members=max_members)


def iter_folder(root: Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """The files below a folder, links that leave the folder and anything but regular files refused."""
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
            reason = name_problem(name)
            if not reason and not full.resolve().is_relative_to(root):
                reason = "link pointing outside the imported folder refused"
            size = 0
            if not reason:
                try:
                    st = full.stat()
                except OSError as exc:
                    st, reason = None, f"could not be read: {exc.strerror or exc}"
                if st is not None and not stat.S_ISREG(st.st_mode):
                    reason = f"not a regular file ({_file_kind(st.st_mode)}): skipped"
                elif st is not None:
                    size = st.st_size
            if not reason and size > max_bytes:
                reason = f"{size:,} bytes exceed the limit of {max_bytes:,}"
            yield SourceEntry(
                name=name, size=size, read=full.read_bytes, problem=reason, head=_file_head(full), locator=name
            )


def _refused() -> bytes:
    raise OSError("link pointing outside the imported folder refused")


def _file_head(path: Path) -> Callable[[int], bytes]:
    def read_head(n: int) -> bytes:
        with path.open("rb") as fh:
            return fh.read(n)

    return read_head


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def regular_file_problem(path: Path) -> str:
    """Why a single file (an image or a label table given alone) cannot be read, or '' when it can."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path.name}: could not be read: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name}: not a regular file ({_file_kind(st.st_mode)})"
    return ""


@contextlib.contextmanager
def open_source(
    path: str | Path, *, max_bytes: int, max_members: int, max_total_bytes: int | None = None
) -> Iterator[Iterator[SourceEntry]]:
    """The entries of a folder, a .zip (opened once, closed on exit) or a single image file."""
    path = Path(path)
    if path.is_dir():
        yield iter_folder(path, max_bytes=max_bytes, max_members=max_members)
        return
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    problem = regular_file_problem(path)
    if problem:
        raise SourceError(problem)
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        archive = _Archive(path, max_bytes=max_bytes, max_total_bytes=max_total_bytes)
        try:
            yield _iter_zip(archive, max_members=max_members)
        finally:
            archive.close()
        return
    yield iter([SourceEntry(name=path.name, size=path.stat().st_size, read=path.read_bytes, locator=path.name)])


@contextlib.contextmanager
def open_entries(
    path: str | Path, locators: list[str | int], *, max_bytes: int, max_total_bytes: int | None = None
) -> Iterator[Iterator[SourceEntry]]:
    """The entries of a source that `open_source` listed, found again by their locators, in that order (a chunk of
    an import: their checks were made when the source was listed). A member gone since: an entry whose read fails."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        root = path.resolve()

        def folder_entries() -> Iterator[SourceEntry]:
            for name in locators:
                full = root / str(name)
                if not full.resolve().is_relative_to(root):  # replaced by a link since it was listed
                    yield SourceEntry(name=str(name), size=0, read=_refused, locator=name)
                    continue
                yield SourceEntry(name=str(name), size=0, read=full.read_bytes, head=_file_head(full), locator=name)

        yield folder_entries()
        return
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        archive = _Archive(path, max_bytes=max_bytes, max_total_bytes=max_total_bytes)
        try:
            infos = archive.zip.infolist()

            def zip_entries() -> Iterator[SourceEntry]:
                for index in locators:
                    info = infos[int(index)]
                    yield SourceEntry(
                        name=info.filename,
                        size=info.file_size,
                        read=archive.reader(int(index), info),
                        head=archive.head(info),
                        locator=index,
                    )

            yield zip_entries()
        finally:
            archive.close()
        return
    yield iter([SourceEntry(name=path.name, size=path.stat().st_size, read=path.read_bytes, locator=path.name)])


def iter_source(path: str | Path, *, max_bytes: int, max_members: int) -> Iterator[SourceEntry]:
    """Dispatch on the kind of source: a folder, a .zip, or a single image file (see `open_source`)."""
    path = Path(path)
    if path.is_dir():
        return iter_folder(path, max_bytes=max_bytes, max_members=max_members)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    problem = regular_file_problem(path)
    if problem:
        raise SourceError(problem)
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        return iter_zip(path, max_bytes=max_bytes, max_members=max_members)
    return iter([SourceEntry(name=path.name, size=path.stat().st_size, read=path.read_bytes)])
