"""The import's body (worker, CPU queue): every file of a source decoded, de-identified, stored, labelled.

`import_job_run` is the body of the `retrieval.tasks.import_run` task and is also what
`manage.py import_images --sync` calls. An import of more than IMPORT_CHUNK_SIZE units, run by its task, is
planned here (`_Plan`: a file of one line per unit), imported in chunks, each its own task on every cpu worker
(`import_chunk_run`, core.fanout), and finished by this body again (`_chunks_finish`: the report of the import in
one task, merged in order; labels; counts). Each image is stored atomically: its
files are written to the media storage, each all or nothing (core.files.save_atomic: locally under a unique
temporary name renamed into place, in an S3 bucket one PUT), then its rows are created in
one transaction that holds the dataset's lock; if anything fails the files are removed again
unless a committed row references them (a concurrent import of the same file), so a failed file
leaves nothing behind and never touches stored images. A full disk fails the job with
`StorageFull` and leaves no temporary file.

The report lists what happened to each file, capped (`REPORT_MAX_LINES`, and `GROUP_LIMIT` lines
per repetitive kind such as label rows naming no file) with a count of what was left out, so a
100,000-member archive or a 200,000-row table gives a report of bounded size.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q

from core import files
from core.errors import ApplicationError
from core.fanout import part_progress, part_run, parts_failure, parts_fan_out, parts_state, parts_wait
from core.jobs import JobStatus, job_progress, job_run
from retrieval.imports import labels as label_tables
from retrieval.imports import names, uploads
from retrieval.imports.dicomweb import retrieved as pacs_retrieved
from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.deid import deidentify_dicom, strip_image_metadata
from retrieval.imports.imaging.dicom import DicomHeader, read_dicom_header
from retrieval.imports.imaging.errors import ImageDecodeError
from retrieval.imports.imaging.renditions import make_rendition, make_thumbnail
from retrieval.imports.imaging.series import group_series, middle
from retrieval.imports.imaging.sniff import content_hash, looks_like_raw_dicom, sniff_format
from retrieval.imports.imaging.values import make_values_png
from retrieval.imports.sources import (
    SourceEntry,
    SourceError,
    open_entries,
    open_source,
    printable_name,
    regular_file_problem,
)
from retrieval.models import Dataset, DicomwebSource, Image, ImportChunk, ImportJob, Label, Rating

log = logging.getLogger(__name__)

#: Report lines kept in full; beyond them, lines are counted by status.
REPORT_MAX_LINES = 5_000
#: Lines kept per repetitive kind (label rows naming no file, rows listed twice…); the rest are counted.
GROUP_LIMIT = 20
#: Bytes read to recognise a file's format before reading all of it (a DICOM preamble is 132).
SNIFF_BYTES = 132
#: The lengths of the Image columns a DICOM header fills (retrieval.models.Image).
HEADER_LIMITS = {"sop_instance_uid": 64, "study_uid": 64, "series_uid": 64, "modality": 16}
#: Label.name and Rating.rater hold at most this many characters.
LABEL_NAME_CHARS = 100


class StorageFull(OSError):
    """The disk holding MEDIA_ROOT is full (or over quota): the import stops cleanly."""


class NothingImported(ValueError):
    """Files were given but none could be imported (each one's reason is in the report)."""


def patient_pseudonym(*, dataset: Dataset, patient_id: str | None) -> str:
    """A stable pseudonym for a patient within a dataset (HMAC-SHA256 under the dataset's key)."""
    if not patient_id or not str(patient_id).strip():
        return ""
    digest = hmac.new(dataset.pseudonym_key.encode(), str(patient_id).strip().encode(), hashlib.sha256)
    return "P" + digest.hexdigest()[:11].upper()


@dataclass
class _Unit:
    """One image to create: a PNG/JPEG file, a DICOM file, or the middle slice of a series."""

    entry: SourceEntry
    slices: int = 1
    sop: str | None = None  # its SOPInstanceUID (DICOM)
    digest: str = ""  # the content hash of the bytes read when it was planned
    dup: str = ""  # a chunk's unit: the name of an earlier unit of the plan with the same content


@dataclass
class _Run:
    job: ImportJob
    rows: dict[str, list[label_tables.LabelRow]] = field(default_factory=dict)
    matched_keys: set[str] = field(default_factory=set)
    suffixes: dict[str, str | None] | None = None
    stored: set[int] = field(default_factory=set)  # images stored by this attempt
    report: list[dict] = field(default_factory=list)
    raw_keys: dict[str, str] = field(default_factory=dict)  # names: a row's key -> the name its table gives
    counts: Counter = field(default_factory=Counter)  # report lines by status, listed or not
    hidden: Counter = field(default_factory=Counter)  # lines left out: (status, group) -> count
    group_seen: Counter = field(default_factory=Counter)
    seen_files: int = 0  # entries of the source, refused ones included
    label_file: object = None  # the label table being read (closed when the import ends)
    table_rows: int = 0  # usable rows of the label table, kept or not (rows: only those that may label a file)
    part: ImportChunk | None = None  # the chunk this run imports (core.fanout), None: the whole import
    keep_report: bool = False  # the job's report is not this run's to write (it waits for its chunks)

    def imported(self) -> None:
        """Count an image imported: on the job, or on the chunk (and the job's count, the sum of its chunks')."""
        if self.part is None:
            _count(self.job, "n_imported")
            return
        self.part.n_imported += 1  # written with the chunk's progress (core.fanout.part_progress: sums)

    def note(self, status: str, message: str, *, file: str = "", line: int | None = None, group: str = "") -> None:
        """Add a report line (file names and messages made storable: no NUL, no undecodable bytes). Lines of
        one `group` beyond GROUP_LIMIT, and any line beyond REPORT_MAX_LINES, are counted instead."""
        self.counts[status] += 1
        if group:
            self.group_seen[group] += 1
            if self.group_seen[group] > GROUP_LIMIT:
                self.hidden[(status, group)] += 1
                return
        if len(self.report) >= REPORT_MAX_LINES:
            self.hidden[(status, f"files {status}" if status in ("failed", "skipped") else "report lines")] += 1
            return
        self.report.append(
            {"file": printable_name(file), "line": line, "status": status, "message": printable_name(message)}
        )


def import_job_run(*, job_id: int, chunked: bool = False) -> ImportJob | None:
    """The import task's body: claim the job, import every file, apply labels, report (core runner: any failure
    is recorded on the job). `chunked` (the task): more than IMPORT_CHUNK_SIZE units are imported as chunks, each
    its own task on every cpu worker (core.fanout), and the job's task runs again to finish; otherwise (the
    `--sync` commands) everything runs here. Sources uploaded for the import are removed once it succeeded or
    failed on them (an unusable archive or table); an unexpected failure keeps them for a retry
    (`import_job_retry`), at most IMPORT_UPLOAD_KEEP_HOURS (retrieval.imports.uploads)."""
    refused = []

    def body(job: ImportJob) -> None:
        run = _Run(job=job)
        try:
            with pacs_retrieved(job):  # a PACS import: its instances in a folder while it runs (dicomweb.py)
                _import(run, chunked=chunked)
        except (SourceError, label_tables.LabelTableError, NothingImported) as exc:
            table = isinstance(exc, label_tables.LabelTableError)
            message = _scrub_source_names(str(exc), job)  # names: issue 12, finding 2
            run.note("failed", message, file=LABEL_TABLE if table else SOURCE)
            refused.append(exc)
            raise type(exc)(message) from None
        except StorageFull as exc:
            run.note("failed", str(exc))
            raise
        finally:
            if run.label_file is not None:
                run.label_file.close()
            if not run.keep_report:
                _save_report(run)

    uploads.uploads_expired_remove()
    job = job_run(ImportJob, job_id, body, expected=EXPECTED)
    if job is not None and (job.status == JobStatus.SUCCEEDED or (job.status == JobStatus.FAILED and refused)):
        uploads.uploads_remove(job)
        if job.status == JobStatus.SUCCEEDED or job.remove_sources:  # names: a path names folders (issue 12)
            uploads.source_paths_forget(job)  # (a failed server import keeps it for a retry: uploads.py)
    return job


EXPECTED = (SourceError, label_tables.LabelTableError, NothingImported, StorageFull)


def _import(run: _Run, *, chunked: bool = False) -> None:
    job = run.job
    state = parts_state(job, ImportChunk)
    if state == "waiting":  # taken over while its chunks run (core.fanout): it waits again
        run.keep_report = True
        parts_wait(job, ImportChunk)
        return
    if state == "failed":  # a chunk failed while the job was being taken over
        run.keep_report = True
        raise ApplicationError(parts_failure(job, ImportChunk) or "a chunk of the import failed")
    if state == "done":  # the last chunk queued the job again: its finishing step
        _chunks_finish(run)
        return
    # An unusable table (not text, no header, a required column missing) stops the import before any image;
    # its rows are read once the source's files are known (_read_label_rows).
    table = _open_label_table(run) if job.labels_path else None
    job.n_imported = job.n_skipped = job.n_failed = job.n_labels = 0  # a resumed run counts afresh
    ImportJob.objects.filter(pk=job.pk).update(n_imported=0, n_skipped=0, n_failed=0, n_labels=0)
    source = (
        open_source(
            job.source_path,
            max_bytes=settings.IMPORT_MAX_FILE_BYTES,
            max_members=settings.IMPORT_MAX_ARCHIVE_MEMBERS,
            max_total_bytes=settings.IMPORT_MAX_ARCHIVE_BYTES,
        )
        if job.source_path
        else contextlib.nullcontext(None)
    )
    # A PACS import runs in one task: its retrieved folder lives only while the task runs (dicomweb.retrieved).
    pacs = DicomwebSource.objects.filter(job=job).exists()
    plan = _Plan(job, chunk=settings.IMPORT_CHUNK_SIZE if chunked and not pacs else 10**12)
    with source as entries:  # a zip is opened once, for the scan and the import
        if entries is not None:
            names_: list[str] = []  # (pseudonyms) whose label rows are kept

            def add(unit: _Unit) -> None:
                if table is not None:
                    names_.append(unit.entry.name)
                plan.add(unit)

            _plan_units(run, entries, add)
            if table is not None:
                _read_label_rows(run, table, names_)  # its lines in the report of the planning
            del names_
        elif table is not None:  # labels only
            _read_label_rows(run, table, [])
        plan.close(run)
        if plan.units is None:  # more than one chunk: each its own task, on every cpu worker (core.fanout)
            n_chunks = math.ceil(plan.count / plan.chunk)
            parts_fan_out(
                job,
                ImportChunk,
                n_chunks,
                total=plan.count,
                note=f"{plan.count} images to import in {n_chunks} chunks",
            )
            return
        units = plan.units
        plan.remove()
        job_progress(job, done=0, total=len(units), note=f"{len(units)} images to import")
        for i, unit in enumerate(units, 1):
            _import_unit(run, unit)
            job_progress(job, done=i, note=printable_name(unit.entry.name))
    _import_end(run)


def _import_end(run: _Run) -> None:
    """Labels for images stored before, the label count, and the refusal of an import that stored nothing."""
    job = run.job
    added = _apply_labels_to_existing(run) if run.rows else 0
    job.n_labels = Label.objects.filter(image__import_job=job).count() + added
    ImportJob.objects.filter(pk=job.pk).update(n_labels=job.n_labels)
    if job.source_path and job.n_imported == 0:
        _explain_nothing_imported(run)


def _open_label_table(run: _Run) -> label_tables.LabelTable:
    """The import's label table, opened: its header and column plan are read (LabelTableError if unusable)."""
    job = run.job
    path = Path(job.labels_path)
    problem = regular_file_problem(path)
    if problem:
        raise label_tables.LabelTableError(problem)
    run.label_file = path.open("rb")
    # Repeated rows are remarked on among the rows kept (_note_repeated_rows): the parser keeps no set of keys.
    return label_tables.LabelTable(run.label_file, job.label_format, allow_free_text=job.allow_free_text, dedupe=False)


def _read_label_rows(run: _Run, table: label_tables.LabelTable, names_: list[str], *, stored: bool = True) -> None:
    """Stream the table's rows, keeping only those that may label a file of this import (a path suffix of the
    row's file is one of a file's) or an image stored in the dataset before; the others are counted as rows
    naming no file (a few listed, the rest in one line), so memory does not grow with the table's rows.
    Problems are reported as they come (names: rows are keyed by the pseudonym of the file they name, and the
    report names no file of the table: issue 12, finding 2). A chunk (core.fanout) keeps the rows of its own
    files only (`stored=False`): rows that name no file of an import never label one of its files.
    The table is closed once read."""
    suffixes = set()
    for name in names_:
        parts = PurePosixPath(name).parts
        suffixes.update("/".join(parts[i:]) for i in range(len(parts)))
    stored_names = set()
    images = Image.objects.filter(dataset=run.job.dataset) if stored else Image.objects.none()
    for source_name in images.values_list("source_name", flat=True).iterator():
        stored_names.update((_norm(source_name), _norm(PurePosixPath(source_name).name)))

    def kept() -> Iterator[label_tables.LabelRow]:
        for item in table.rows():
            if isinstance(item, label_tables.RowProblem):
                keys = {item.key: _pseudonym(run, item.key)} if item.key else {}
                run.note("warning", _scrub_keys(item.message, keys), file=LABEL_TABLE, line=item.line, group="table")
                continue
            run.table_rows += 1
            key, raw = _pseudonym(run, item.key), _norm(item.key)
            parts = PurePosixPath(key).parts
            if any("/".join(parts[i:]) in suffixes for i in range(len(parts))) or any(
                k in stored_names for k in (key, PurePosixPath(key).name, raw, PurePosixPath(raw).name)
            ):
                yield item
            else:
                run.note(
                    "warning",
                    f"label row for {key!r} names no imported file",
                    file=LABEL_TABLE,
                    line=item.line,
                    group="no-file",
                )

    for row in _rows_within_limits(run, kept()):
        key = _pseudonym(run, row.key)
        run.rows.setdefault(key, []).append(row)
        run.raw_keys.setdefault(key, _norm(row.key))
    _note_repeated_rows(run)
    run.label_file.close()


class _Plan:
    """The units an import plans: kept in memory while they fit one chunk (the import runs in its own task, as
    one chunk), else written to a file of one JSON line per unit (core.fanout: the chunks read their lines), so a
    100,000-file source is never held in memory. Each line names where the file is (`open_entries`), its
    pseudonym, its series size, SOPInstanceUID and content hash, and the earlier unit of the plan with the same
    content (a chunk skips it as the import in one task would, whichever chunk stores first)."""

    def __init__(self, job: ImportJob, *, chunk: int):
        self.job, self.chunk = job, chunk
        self.units: list[_Unit] | None = []
        self.dups: list[str] = []
        self.count = 0
        self._first: dict[str, str] = {}  # content hash -> the first unit's name
        self._file = None

    def add(self, unit: _Unit) -> None:
        first = self._first.setdefault(unit.digest, unit.entry.name) if unit.digest else unit.entry.name
        dup = first if first != unit.entry.name else ""
        self.count += 1
        if self.units is not None:
            self.units.append(unit)
            self.dups.append(dup)
            if len(self.units) <= self.chunk:
                return
            path = _plan_path(self.job)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
            for kept, kept_dup in zip(self.units, self.dups):
                self._write(kept, kept_dup)
            self.units, self.dups = None, []
            return
        self._write(unit, dup)

    def _write(self, unit: _Unit, dup: str) -> None:
        line = {
            "loc": unit.entry.locator,
            "name": unit.entry.name,
            "slices": unit.slices,
            "sop": unit.sop,
            "digest": unit.digest,
            "dup": dup,
        }
        self._file.write(json.dumps(line) + "\n")

    def close(self, run: _Run) -> None:
        """Finish the plan file, with the planning's report and counts beside it for the finishing step."""
        self._first.clear()
        if self._file is None:
            return
        self._file.close()
        state = {
            "chunk": self.chunk,
            "count": self.count,
            "report": run.report,
            "counts": dict(run.counts),
            "hidden": [[status, group, n] for (status, group), n in run.hidden.items()],
            "group_seen": dict(run.group_seen),
            "seen_files": run.seen_files,
        }
        tmp = _plan_path(self.job, ".state.json.part")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, _plan_path(self.job, ".state.json"))

    def remove(self) -> None:
        _plan_remove(self.job)


def _plan_path(job: ImportJob, suffix: str = ".jsonl") -> Path:
    """Where an import's plan is kept while its chunks run (beside the uploads: every cpu worker reads it)."""
    return Path(settings.UPLOAD_ROOT) / "plans" / f"import-{job.pk}{suffix}"


def _plan_remove(job: ImportJob) -> None:
    for suffix in (".jsonl", ".state.json", ".state.json.part"):
        _plan_path(job, suffix).unlink(missing_ok=True)


def _plan_state(job: ImportJob) -> dict:
    try:
        return json.loads(_plan_path(job, ".state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApplicationError(
            f"The plan of import {job.pk} is gone (its file under UPLOAD_ROOT/plans was removed): retry the import."
        ) from None


def _plan_lines(job: ImportJob, index: int, chunk: int) -> list[dict]:
    """The units of chunk `index`: its lines of the plan file, read without holding the others."""
    start = index * chunk
    try:
        with _plan_path(job).open(encoding="utf-8") as fh:
            return [json.loads(line) for line in itertools.islice(fh, start, start + chunk)]
    except FileNotFoundError:
        _plan_state(job)  # the message
        raise


def _plan_names(job: ImportJob) -> list[str]:
    """The names (pseudonyms) of every unit of the plan."""
    try:
        with _plan_path(job).open(encoding="utf-8") as fh:
            return [json.loads(line)["name"] for line in fh]
    except FileNotFoundError:
        _plan_state(job)  # the message
        raise


def import_chunk_run(*, part_id: int) -> ImportChunk | None:
    """The body of a chunk's task (`retrieval.tasks.import_chunk`): import its units of the plan (core.fanout)."""
    return part_run(ImportChunk, part_id, _chunk_import, expected=EXPECTED)


def _chunk_import(part: ImportChunk) -> None:
    job = ImportJob.objects.select_related("dataset").get(pk=part.parent_id)
    try:
        _chunk_units_import(part, job)
    except (SourceError, label_tables.LabelTableError) as exc:  # names: as the import's own (issue 12, finding 2)
        raise type(exc)(_scrub_source_names(str(exc), job)) from None


def _chunk_units_import(part: ImportChunk, job: ImportJob) -> None:
    run = _Run(job=job, part=part)
    lines = _plan_lines(job, part.index, int(_plan_state(job)["chunk"]))
    if job.labels_path:  # the rows of this chunk's files (streamed: the table is not held)
        _read_label_rows(run, _open_label_table(run), [line["name"] for line in lines], stored=False)
    run.report, run.counts, run.hidden, run.group_seen = [], Counter(), Counter(), Counter()  # the plan's lines
    part.n_imported = 0  # a chunk redone after its worker was lost counts afresh (what it stored counts again)
    ImportChunk.objects.filter(pk=part.pk).update(n_imported=0)
    source = open_entries(
        job.source_path,
        [line["loc"] for line in lines],
        max_bytes=settings.IMPORT_MAX_FILE_BYTES,
        max_total_bytes=settings.IMPORT_MAX_ARCHIVE_BYTES,
    )
    with source as entries:
        part_progress(part, done=0, total=len(lines), note=f"chunk {part.index + 1}: {len(lines)} images")
        for i, (line, entry) in enumerate(zip(lines, _pseudonymised(run, entries)), 1):
            unit = _Unit(entry=entry, slices=line["slices"], sop=line["sop"], digest=line["digest"], dup=line["dup"])
            _import_unit(run, unit)
            part_progress(part, done=i, note=printable_name(entry.name), sums={"n_imported": part.n_imported})
    result = {
        "report": run.report,
        "hidden": [[status, group, n] for (status, group), n in run.hidden.items()],
        "matched": sorted(run.matched_keys),
    }
    ImportChunk.objects.filter(pk=part.pk).update(result=result)


def _chunks_finish(run: _Run) -> None:
    """The finishing step of an import in chunks: the planning's report, then each chunk's in order (the report
    of the import in one task), the labels of images stored before, the counts and the import's refusals."""
    job = run.job
    state = _plan_state(job)
    table = _Run(job=job)
    if job.labels_path:  # the rows the import in one task keeps (their lines are in the planning's report)
        _read_label_rows(table, _open_label_table(table), _plan_names(job))
    run.rows, run.raw_keys = table.rows, table.raw_keys
    run.report, run.counts, run.seen_files = list(state["report"]), Counter(state["counts"]), state["seen_files"]
    run.hidden = Counter({(status, group): n for status, group, n in state["hidden"]})
    run.group_seen = Counter(state["group_seen"])
    imported = 0
    for part in ImportChunk.objects.filter(parent=job).order_by("index").iterator():
        for line in part.result.get("report", []):
            run.note(line["status"], line["message"], file=line["file"], line=line["line"])
        for status, group, n in part.result.get("hidden", []):
            run.counts[status] += n
            run.hidden[(status, group)] += n
        run.matched_keys.update(part.result.get("matched", []))
        imported += part.n_imported
    job.n_imported = imported
    ImportJob.objects.filter(pk=job.pk).update(n_imported=imported)
    job_progress(job, done=state["count"], total=state["count"], note="labels and report")
    try:
        _import_end(run)
    finally:
        _plan_remove(job)


def _explain_nothing_imported(run: _Run) -> None:
    """An import of a source that stored nothing says why: an empty source, or every file failed."""
    name = "the folder or archive"  # not its name: a folder's name may name a patient (issue 12, finding 2)
    if run.seen_files == 0:
        raise SourceError(
            f"{name}: no files to import (the folder or archive is empty; hidden files, hidden folders, "
            "__MACOSX, .DS_Store, Thumbs.db and desktop.ini are not imported)"
        )
    if run.counts["failed"] and not run.counts["skipped"]:
        raise NothingImported(
            f"{name}: none of its {run.seen_files:,} files could be imported; each file's reason is in the report"
        )


def _plan_units(run: _Run, sources, emit: Callable[[_Unit], None]) -> None:
    """Read headers, refuse what is unsafe or not an image, and group DICOM series; each unit to import is given
    to `emit` (images as they are read, then the middle slice of each series)."""
    dicoms: list[tuple[str, DicomHeader]] = []
    entries: dict[str, SourceEntry] = {}
    digests: dict[str, str] = {}
    sops: dict[str, str] = {}
    sources = _pseudonymised(run, sources)  # names: from here on a file is known by its pseudonym only
    for count, entry in enumerate(sources, 1):
        run.seen_files = count
        if count % 50 == 0:
            job_progress(run.job, note=f"scanning: {count} files read")
        if entry.problem:
            run.note("failed", entry.problem, file=entry.name)
            continue
        if PurePosixPath(entry.name).suffix.lower() in {".csv", ".tsv", ".txt", ".json"}:
            run.note("skipped", "not an image (label tables are given separately with --labels)", file=entry.name)
            continue
        try:
            data = _read_if_image(entry)
        except SourceError:
            raise  # the archive's total budget: nothing more is read
        except Exception as exc:  # zipfile raises several kinds on corrupt members
            run.note("failed", f"could not be read: {exc}", file=entry.name)
            continue
        kind = sniff_format(data) if data else None
        if kind is None:
            run.note(
                "failed",
                "not a DICOM, PNG or JPEG file" if data else "empty file: not a DICOM, PNG or JPEG file",
                file=entry.name,
            )
        elif kind == "dicom":
            try:
                header = read_dicom_header(data)
            except ImageDecodeError as exc:
                run.note("failed", str(exc), file=entry.name)
                continue
            problem = _header_problem(header)
            if problem:
                run.note("failed", problem, file=entry.name)
                continue
            first = sops.setdefault(header.sop_instance_uid, entry.name) if header.sop_instance_uid else entry.name
            if first != entry.name:  # two files of one instance would look like a 2-slice series
                run.note("skipped", f"duplicate of {first} (same SOPInstanceUID)", file=entry.name)
                continue
            dicoms.append((entry.name, header))
            entries[entry.name] = entry
            digests[entry.name] = content_hash(data)
        else:
            emit(_Unit(entry=entry, digest=content_hash(data)))
    headers = dict(dicoms)
    for group in group_series(dicoms):
        key = middle(group)
        emit(_Unit(entry=entries[key], slices=len(group), sop=headers[key].sop_instance_uid, digest=digests[key]))
        if len(group) > 1:
            run.note("info", f"series of {len(group)} slices: the middle slice was imported", file=key)


def _read_if_image(entry: SourceEntry) -> bytes:
    """The entry's bytes, or only its first bytes when they show it is no image (a member of zeros that
    inflates to gigabytes is refused without being inflated)."""
    if entry.head is not None:
        head = entry.head(SNIFF_BYTES)
        if len(head) < SNIFF_BYTES or not (sniff_format(head) or looks_like_raw_dicom(head)):
            return head  # the whole file, or enough of it to refuse it
    return entry.read()


def _header_problem(header: DicomHeader) -> str:
    """Why header values cannot be stored (too long for their column, control characters), or ''."""
    for attr, limit in HEADER_LIMITS.items():
        value = getattr(header, attr) or ""
        keyword = {"sop_instance_uid": "SOPInstanceUID", "study_uid": "StudyInstanceUID"}.get(
            attr, "SeriesInstanceUID" if attr == "series_uid" else "Modality"
        )
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"{keyword} contains a control character (NUL…): refused"
        if len(value) > limit:
            return f"{keyword} of {len(value)} characters exceeds the DICOM limit of {limit}: refused"
    return ""


def _import_unit(run: _Run, unit: _Unit) -> None:
    job, dataset, name = run.job, run.job.dataset, unit.entry.name
    try:
        data = unit.entry.read()
    except SourceError:
        raise
    except Exception as exc:
        run.note("failed", f"could not be read: {exc}", file=name)
        return
    digest = content_hash(data)
    duplicate = _find_duplicate(dataset, digest, unit.sop)
    if duplicate is not None:
        if duplicate.import_job_id == job.pk and duplicate.source_name == name and duplicate.pk not in run.stored:
            run.matched_keys.update(_keys_for(run, duplicate.source_name))  # an earlier attempt stored it
            run.imported()
            return
        run.note(
            "skipped",
            f"duplicate of {duplicate.source_name} "
            f"(same {'content' if duplicate.content_hash == digest else 'SOPInstanceUID'})",
            file=name,
        )
        return
    if unit.dup and digest == unit.digest:  # an earlier unit of the plan, in another chunk, has this content
        run.note("skipped", f"duplicate of {unit.dup} (same content)", file=name)
        return
    try:
        decoded = decode_image(data, max_pixels=settings.IMPORT_MAX_PIXELS)
    except ImageDecodeError as exc:
        run.note("failed", str(exc), file=name)
        return
    except Exception as exc:  # a decoder fault on this file must not stop the others
        log.warning("decoding %s failed", name, exc_info=True)
        run.note("failed", f"could not be decoded: {exc}", file=name)
        return
    rows = [r for key in _keys_for(run, name) for r in run.rows[key]]
    row, ratings = _split_rows(rows)
    patient = decoded.patient_id or next((r.patient_id for r in rows if r.patient_id), None)
    pseudo = patient_pseudonym(dataset=dataset, patient_id=patient)
    try:
        image = _store_image(
            job=job,
            name=name,
            data=data,
            digest=digest,
            decoded=decoded,
            pseudo=pseudo,
            unit=unit,
            row=row,
            ratings=ratings,
        )
    except _StoredMeanwhile as exc:
        how = "same content" if exc.image.import_job_id == job.pk else "stored by a concurrent import"
        run.note("skipped", f"duplicate of {exc.image.source_name} ({how})", file=name)
        return
    except IntegrityError as exc:
        run.note("failed", f"could not be stored: {exc}", file=name)
        return
    except ImageDecodeError as exc:
        run.note("failed", str(exc), file=name)
        return
    run.stored.add(image.pk)
    run.matched_keys.update(_keys_for(run, name))
    if not rows and run.table_rows:
        run.note("warning", "no row of the label table names this file; imported without labels", file=name)
    run.imported()


def _store_image(*, job, name, data, digest, decoded, pseudo, unit, row, ratings) -> Image:
    """Write original (de-identified DICOM, PNG/JPEG without metadata), rendition and thumbnail, then the rows."""
    dataset = job.dataset
    if decoded.source_format == "dicom":
        original = deidentify_dicom(data, pseudo_id=pseudo or "ANONYMOUS")
    else:
        original = strip_image_metadata(
            data, decoded.source_format, pixels=decoded.pixels, max_pixels=settings.IMPORT_MAX_PIXELS
        )
    image = Image(
        dataset=dataset,
        import_job=job,
        source_name=name,
        source_format=decoded.source_format,
        patient_pseudo_id=pseudo,
        study_uid=decoded.study_uid or "",
        series_uid=decoded.series_uid or "",
        sop_instance_uid=decoded.sop_instance_uid or None,
        modality=decoded.modality or "",
        view_position=(decoded.view_position or (row.view_position if row else "") or "")[:16],
        width=decoded.width,
        height=decoded.height,
        frames=decoded.frames,
        slices_in_series=unit.slices,
        window_center=decoded.window_center,
        window_width=decoded.window_width,
        window_source=decoded.window_source or "",
        content_hash=digest,
    )
    ext = {"dicom": "dcm", "png": "png", "jpeg": "jpg"}[decoded.source_format]
    files = {
        "original": (f"datasets/{dataset.pk}/original/{digest[:2]}/{digest}.{ext}", original),
        "rendition": (
            f"datasets/{dataset.pk}/rendition/{digest[:2]}/{digest}.png",
            make_rendition(decoded.pixels, max_side=settings.RENDITION_MAX_SIDE),
        ),
        "thumbnail": (
            f"datasets/{dataset.pk}/thumbnail/{digest[:2]}/{digest}.png",
            make_thumbnail(decoded.pixels, max_side=settings.THUMBNAIL_MAX_SIDE),
        ),
    }
    if decoded.values is not None:  # greyscale DICOM: the modality values for the viewer (imaging.values)
        values_png, image.display = make_values_png(
            decoded.values, decoded.values_display, max_side=settings.RENDITION_MAX_SIDE
        )
        files["values"] = (f"datasets/{dataset.pk}/values/{digest[:2]}/{digest}.png", values_png)
    written: list[str] = []
    try:
        for attr, (path, content) in files.items():
            written.append(path)
            _write_file(path, content)
            setattr(image, attr, path)
        with transaction.atomic():
            _lock_dataset(dataset)  # one image of a dataset is committed at a time
            duplicate = _find_duplicate(dataset, digest, image.sop_instance_uid)
            if duplicate is not None:  # a concurrent import committed it since the check
                raise _StoredMeanwhile(duplicate)
            for path, content in files.values():
                if not default_storage.exists(path):  # a concurrent import's clean-up removed it before the lock
                    _write_file(path, content)
            image.save()
            if row is not None:
                Label.objects.bulk_create(_label_objects(image, row.labels))
            Rating.objects.bulk_create(Rating(image=image, rater=r, values=v) for r, v in ratings)
    except BaseException:
        _remove_unreferenced(dataset, written)
        raise
    return image


class _StoredMeanwhile(Exception):
    def __init__(self, image: Image):
        super().__init__(image.source_name)
        self.image = image


def _lock_dataset(dataset: Dataset) -> None:
    """Serialise commits into one dataset: a row lock on PostgreSQL; SQLite's IMMEDIATE transactions
    (config.settings) already hold the database's write lock."""
    list(Dataset.objects.select_for_update().filter(pk=dataset.pk).values_list("pk", flat=True))


def _remove_unreferenced(dataset: Dataset, paths: list[str]) -> None:
    """Remove the files of a failed image, except those a committed image references (content-addressed
    paths: a concurrent import of the same file may have committed them)."""
    try:
        with transaction.atomic():
            _lock_dataset(dataset)
            for path in paths:
                referenced = Q(original=path) | Q(rendition=path) | Q(thumbnail=path) | Q(values=path)
                if not Image.objects.filter(referenced).exists():
                    default_storage.delete(path)
    except Exception:  # the database is gone too: keep the files (a later import reuses them), report the cause
        log.warning("could not clean up %s after a failed image", paths, exc_info=True)


def _write_file(path: str, content: bytes) -> None:
    """Store a file in the media storage, all or nothing (core.files.save_atomic: locally a temporary name
    renamed into place, in S3 one PUT); a full local disk raises StorageFull and leaves no temporary file."""
    try:
        files.save_atomic(default_storage, path, content)
    except files.StorageFull as exc:
        raise StorageFull(
            exc.errno,
            f"the disk holding the media folder is full ({os.strerror(exc.errno)}): the import stopped; "
            "images stored before are kept and no partial file was left. Free space, then retry the import",
        ) from exc


RATER_COLUMNS = ("rater", "reader", "radiologist")


def _split_rows(rows: list) -> tuple:
    """(the row of labels or None, [(rater, numeric values)]) of the table rows naming one file.

    A row with a rater column is one reader's rating vector (paper 004's rating tables); the
    first row without one carries the image's labels.
    """
    label_row, ratings = None, []
    for row in rows:
        rater_key = next((k for k in row.labels if k.strip().lower() in RATER_COLUMNS), None)
        if rater_key is None:
            label_row = label_row or row
            continue
        values = {k: v for k, v in row.labels.items() if k != rater_key and isinstance(v, (int, float))}
        ratings.append((str(row.labels[rater_key])[:100], values))
    return label_row, ratings


def _label_objects(image: Image, values: dict) -> list[Label]:
    out = []
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(Label(image=image, name=name[:100], value_num=float(value)))
        else:
            out.append(Label(image=image, name=name[:100], value_text=str(value)[:200]))
    return out


def _apply_labels_to_existing(run: _Run) -> int:
    """Rows that name images stored earlier update their labels; rows naming no file are reported."""
    dataset = run.job.dataset
    by_name = {}
    for image in Image.objects.filter(dataset=dataset).only("id", "source_name"):
        for key in {_norm(image.source_name), _norm(PurePosixPath(image.source_name).name)}:
            by_name.setdefault(key, []).append(image)
    added = 0
    for key, rows in run.rows.items():
        if key in run.matched_keys:
            continue
        # By the pseudonym of the name the table gives, or by that name when it is a stored one (a table
        # written from the image list).
        raw = run.raw_keys.get(key, "")
        images = next(
            (by_name[k] for k in (key, PurePosixPath(key).name, raw, PurePosixPath(raw).name) if k in by_name), []
        )
        if len(images) != 1:
            for row in rows:
                why = (
                    "names no imported file"
                    if not images
                    else f"matches {len(images)} files; use the full relative path"
                )
                run.note(
                    "warning",
                    f"label row for {key!r} {why}",
                    file=LABEL_TABLE,
                    line=row.line,
                    group="no-file" if not images else "ambiguous",
                )
            continue
        row, ratings = _split_rows(rows)
        with transaction.atomic():
            for name, value in row.labels.items() if row else ():
                obj = _label_objects(images[0], {name: value})[0]
                Label.objects.update_or_create(
                    image=images[0], name=obj.name, defaults={"value_num": obj.value_num, "value_text": obj.value_text}
                )
                added += 1
            for rater, values in ratings:
                Rating.objects.update_or_create(image=images[0], rater=rater, defaults={"values": values})
    return added


def _keys_for(run: _Run, name: str) -> list[str]:
    """The label-table key naming this file: the longest path suffix shared by one key only.

    Tables name files by base name (NIH), by a path that may carry an extra leading folder
    (CheXpert), or by the exact relative path; all of these match.
    """
    if not run.rows:
        return []
    if run.suffixes is None:
        run.suffixes = {}
        for key in run.rows:
            parts = PurePosixPath(key).parts
            for i in range(len(parts)):
                suffix = "/".join(parts[i:])
                run.suffixes[suffix] = key if suffix not in run.suffixes else None  # None: ambiguous
    parts = PurePosixPath(_norm(name)).parts
    for i in range(len(parts)):
        key = run.suffixes.get("/".join(parts[i:]))
        if key is not None:
            return [key]
    return []


def _norm(key: str) -> str:
    return names.normalise(key)


# --------------------------------------------------------------------------- names (issue 12, finding 2)
# No folder or file name of a source is stored: entries are renamed to their pseudonyms as they are read,
# label rows are keyed by the pseudonym of the file they name, and report lines about a label table or
# the source as a whole name neither.

LABEL_TABLE = "label table"  # the report's `file` of a label-table line
SOURCE = "source"  # … and of a line about the whole folder or archive


def _pseudonym(run: _Run, name: str) -> str:
    return names.path_pseudonym(run.job.dataset.pseudonym_key, name)


def _pseudonymised(run: _Run, entries: Iterable[SourceEntry]) -> Iterator[SourceEntry]:
    for entry in entries:
        pseudonym = _pseudonym(run, entry.name)
        yield replace(
            entry,
            name=pseudonym,
            read=_scrubbed(entry.read, entry, pseudonym, run.job),
            head=_scrubbed(entry.head, entry, pseudonym, run.job) if entry.head is not None else None,
        )


class UnreadableFile(Exception):
    """One file of the source could not be read (its message names the file by its pseudonym only)."""


def _scrubbed(reader: Callable, entry: SourceEntry, pseudonym: str, job: ImportJob) -> Callable:
    """The entry's reader (read or head), its errors without the file's path (an OSError or zipfile names
    the file). The archive's total budget stays a SourceError: it stops the whole import."""

    def read(*args) -> bytes:
        try:
            return reader(*args)
        except SourceError:
            raise
        except Exception as exc:
            message = _replace_names(str(exc), {entry.name: pseudonym})
            raise UnreadableFile(_scrub_source_names(message, job)) from None

    return read


def _replace_names(message: str, names_: dict[str, str]) -> str:
    """`message` with each whole name (not part of another word or path) replaced: the parsers write
    `name: …` and `'name'`."""
    present = sorted((k for k in names_ if k and k in message), key=len, reverse=True)
    if not present:
        return message
    pattern = re.compile(r"(?<![^\s'\"(/])(" + "|".join(map(re.escape, present)) + r")(?=$|[\s'\":,)])")
    return pattern.sub(lambda m: names_[m.group(1)], message)


def _scrub_keys(message: str, keys: dict[str, str]) -> str:
    """A label-table problem with every file name of the table replaced by its pseudonym."""
    return _replace_names(message, keys)


def _scrub_source_names(message: str, job: ImportJob) -> str:
    """A message about the source or label table as a whole, without the server path or the file's name."""
    for path, what in ((job.source_path, SOURCE), (job.labels_path, LABEL_TABLE)):
        if path:
            spellings = {str(path), str(Path(path)), str(Path(path).resolve())}
            for spelling in sorted(spellings, key=len, reverse=True):  # absolute paths: replaced wherever they are
                message = message.replace(spelling, what)
            message = _replace_names(message, {Path(path).name: what, Path(path).resolve().name: what})
    return message


def _find_duplicate(dataset: Dataset, digest: str, sop_uid: str | None) -> Image | None:
    by_hash = Image.objects.filter(dataset=dataset, content_hash=digest).first()
    if by_hash or not sop_uid:
        return by_hash
    return Image.objects.filter(dataset=dataset, sop_instance_uid=sop_uid).first()


def _count(job: ImportJob, field_name: str) -> None:
    setattr(job, field_name, getattr(job, field_name) + 1)
    ImportJob.objects.filter(pk=job.pk).update(**{field_name: getattr(job, field_name)})


def _save_report(run: _Run) -> None:
    job = run.job
    summary = [
        {"file": "", "line": None, "status": status, "message": f"{count:,} more {_group_text(group)} (not listed)"}
        for (status, group), count in sorted(run.hidden.items())
    ]
    job.report = run.report + summary
    job.n_failed = run.counts["failed"]
    job.n_skipped = run.counts["skipped"]
    ImportJob.objects.filter(pk=job.pk).update(report=job.report, n_failed=job.n_failed, n_skipped=job.n_skipped)


def _group_text(group: str) -> str:
    return {
        "no-file": "label rows name no imported file",
        "ambiguous": "label rows match several files",
        "repeated": "files listed more than once in the label table",
        "long-name": "label names over the length limit",
        "table": "label table problems",
    }.get(group, group)


def _rows_within_limits(run: _Run, rows: list) -> Iterator:
    """Label names (columns) and raters over LABEL_NAME_CHARS would be cut and collide: left out, with a line."""
    table = LABEL_TABLE
    long_columns: set[str] = set()
    for row in rows:
        for column in [c for c in row.labels if len(c) > LABEL_NAME_CHARS]:
            del row.labels[column]
            if column not in long_columns:
                long_columns.add(column)
                run.note(
                    "warning",
                    f"column {column[:40]!r}… has a name of {len(column)} characters (limit {LABEL_NAME_CHARS}): "
                    "not imported",
                    file=table,
                    group="long-name",
                )
        rater_key = next((k for k in row.labels if k.strip().lower() in RATER_COLUMNS), None)
        if rater_key is not None and len(str(row.labels[rater_key])) > LABEL_NAME_CHARS:
            run.note(
                "warning",
                f"rater name of {len(str(row.labels[rater_key]))} characters (limit {LABEL_NAME_CHARS}): "
                "row not imported",
                file=table,
                line=row.line,
                group="long-name",
            )
            continue
        yield row


def _note_repeated_rows(run: _Run) -> None:
    """A file listed by several label rows (raters apart) gets its first row's labels, and a remark."""
    table = LABEL_TABLE
    for key, rows in run.rows.items():  # keys are pseudonyms (names: issue 12, finding 2)
        plain = [r for r in rows if not any(k.strip().lower() in RATER_COLUMNS for k in r.labels)]
        if len(plain) > 1:
            lines = ", ".join(str(r.line) for r in plain[:10]) + ("…" if len(plain) > 10 else "")
            run.note(
                "warning",
                f"{key!r} is listed {len(plain)} times (lines {lines}): the labels of line {plain[0].line} "
                "were used, the other rows ignored",
                file=table,
                line=plain[1].line,
                group="repeated",
            )
