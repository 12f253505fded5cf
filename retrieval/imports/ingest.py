"""The import's body (worker, CPU queue): every file of a source decoded, de-identified, stored, labelled.

`import_job_run` is the body of the `retrieval.tasks.import_run` task and is also what
`manage.py import_images --sync` calls. Each image is stored atomically: its
files are written, then its rows are created in one transaction; if anything fails the files
are removed again, so a failed file leaves nothing behind and never touches stored images.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

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
from retrieval.imports.imaging.sniff import content_hash, sniff_format
from retrieval.imports.sources import SourceEntry, SourceError, iter_source
from retrieval.models import Dataset, Image, ImportJob, Label, Rating

log = logging.getLogger(__name__)


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
    header: DicomHeader | None = None


@dataclass
class _Run:
    job: ImportJob
    rows: dict[str, list[label_tables.LabelRow]] = field(default_factory=dict)
    matched_keys: set[str] = field(default_factory=set)
    suffixes: dict[str, str | None] | None = None
    stored: set[int] = field(default_factory=set)  # images stored by this attempt
    report: list[dict] = field(default_factory=list)
    raw_keys: dict[str, str] = field(default_factory=dict)  # names: a row's key -> the name its table gives

    def note(self, status: str, message: str, *, file: str = "", line: int | None = None) -> None:
        self.report.append({"file": file, "line": line, "status": status, "message": message})


def import_job_run(*, job_id: int) -> ImportJob | None:
    """The import task's body: claim the job, import every file, apply labels, report (core runner: any failure
    is recorded on the job). Sources uploaded for the import are removed once it succeeded or failed on them
    (an unusable archive or table); an unexpected failure keeps them for a retry (`import_job_retry`), at most
    IMPORT_UPLOAD_KEEP_HOURS (retrieval.imports.uploads)."""
    refused = []

    def body(job: ImportJob) -> None:
        run = _Run(job=job)
        try:
            with pacs_retrieved(job):  # a PACS import: its instances in a folder while it runs (dicomweb.py)
                _import(run)
        except (SourceError, label_tables.LabelTableError) as exc:
            table = isinstance(exc, label_tables.LabelTableError)
            message = _scrub_source_names(str(exc), job)  # names: issue 12, finding 2
            run.note("failed", message, file=LABEL_TABLE if table else SOURCE)
            refused.append(exc)
            raise type(exc)(message) from None
        finally:
            _save_report(run)

    uploads.uploads_expired_remove()
    job = job_run(ImportJob, job_id, body, expected=(SourceError, label_tables.LabelTableError))
    if job is not None and (job.status == JobStatus.SUCCEEDED or (job.status == JobStatus.FAILED and refused)):
        uploads.uploads_remove(job)
        if job.status == JobStatus.SUCCEEDED or job.remove_sources:  # names: a path names folders (issue 12)
            uploads.source_paths_forget(job)  # (a failed server import keeps it for a retry: uploads.py)
    return job


def _import(run: _Run) -> None:
    job = run.job
    if job.labels_path:
        # Parse the whole table first: an unusable table stops the import before any image.
        rows, problems = label_tables.parse_label_table(
            Path(job.labels_path).read_bytes(), job.label_format, allow_free_text=job.allow_free_text
        )
        # names (issue 12, finding 2): rows are keyed by the pseudonym of the file they name, and the
        # report names no file of the table.
        keys = {row.key: _pseudonym(run, row.key) for row in rows}
        for line, message in problems:
            run.note("warning", _scrub_keys(message, keys), file=LABEL_TABLE, line=line)
        for row in rows:
            run.rows.setdefault(keys[row.key], []).append(row)
            run.raw_keys.setdefault(keys[row.key], _norm(row.key))
    job.n_imported = job.n_skipped = job.n_failed = job.n_labels = 0  # a resumed run counts afresh
    ImportJob.objects.filter(pk=job.pk).update(n_imported=0, n_skipped=0, n_failed=0, n_labels=0)
    units = _plan_units(run) if job.source_path else []
    job_progress(job, done=0, total=len(units), note=f"{len(units)} images to import")
    for i, unit in enumerate(units, 1):
        _import_unit(run, unit)
        job_progress(job, done=i, note=unit.entry.name)
    added = _apply_labels_to_existing(run) if run.rows else 0
    job.n_labels = Label.objects.filter(image__import_job=job).count() + added
    ImportJob.objects.filter(pk=job.pk).update(n_labels=job.n_labels)


def _plan_units(run: _Run) -> list[_Unit]:
    """Read headers, refuse what is unsafe or not an image, and group DICOM series."""
    units: list[_Unit] = []
    dicoms: list[tuple[str, DicomHeader]] = []
    entries: dict[str, SourceEntry] = {}
    sops: dict[str, str] = {}
    sources = iter_source(
        run.job.source_path, max_bytes=settings.IMPORT_MAX_FILE_BYTES, max_members=settings.IMPORT_MAX_ARCHIVE_MEMBERS
    )
    sources = _pseudonymised(run, sources)  # names: from here on a file is known by its pseudonym only
    for count, entry in enumerate(sources, 1):
        if count % 50 == 0:
            job_progress(run.job, note=f"scanning: {count} files read")
        if entry.problem:
            run.note("failed", entry.problem, file=entry.name)
            continue
        if PurePosixPath(entry.name).suffix.lower() in {".csv", ".tsv", ".txt", ".json"}:
            run.note("skipped", "not an image (label tables are given separately with --labels)", file=entry.name)
            continue
        try:
            data = entry.read()
        except Exception as exc:  # zipfile raises several kinds on corrupt members
            run.note("failed", f"could not be read: {exc}", file=entry.name)
            continue
        kind = sniff_format(data)
        if kind is None:
            run.note("failed", "not a DICOM, PNG or JPEG file", file=entry.name)
        elif kind == "dicom":
            try:
                header = read_dicom_header(data)
            except ImageDecodeError as exc:
                run.note("failed", str(exc), file=entry.name)
                continue
            first = sops.setdefault(header.sop_instance_uid, entry.name) if header.sop_instance_uid else entry.name
            if first != entry.name:  # two files of one instance would look like a 2-slice series
                run.note("skipped", f"duplicate of {first} (same SOPInstanceUID)", file=entry.name)
                continue
            dicoms.append((entry.name, header))
            entries[entry.name] = entry
        else:
            units.append(_Unit(entry=entry))
    headers = dict(dicoms)
    for group in group_series(dicoms):
        key = middle(group)
        units.append(_Unit(entry=entries[key], slices=len(group), header=headers[key]))
        if len(group) > 1:
            run.note("info", f"series of {len(group)} slices: the middle slice was imported", file=key)
    return units


def _import_unit(run: _Run, unit: _Unit) -> None:
    job, dataset, name = run.job, run.job.dataset, unit.entry.name
    try:
        data = unit.entry.read()
    except Exception as exc:
        run.note("failed", f"could not be read: {exc}", file=name)
        return
    digest = content_hash(data)
    duplicate = _find_duplicate(dataset, digest, unit.header.sop_instance_uid if unit.header else None)
    if duplicate is not None:
        if duplicate.import_job_id == job.pk and duplicate.pk not in run.stored:  # an earlier attempt stored it
            run.matched_keys.update(_keys_for(run, duplicate.source_name))
            _count(job, "n_imported")
            return
        run.note(
            "skipped",
            f"duplicate of {duplicate.source_name} "
            f"(same {'content' if duplicate.content_hash == digest else 'SOPInstanceUID'})",
            file=name,
        )
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
    except IntegrityError:
        run.note("skipped", "duplicate (stored by a concurrent import)", file=name)
        return
    except ImageDecodeError as exc:
        run.note("failed", str(exc), file=name)
        return
    run.stored.add(image.pk)
    run.matched_keys.update(_keys_for(run, name))
    if not rows and run.rows:
        run.note("warning", "no row of the label table names this file; imported without labels", file=name)
    _count(job, "n_imported")


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
    written: list[str] = []
    try:
        for attr, (path, content) in files.items():
            _write_file(path, content)
            written.append(path)
            setattr(image, attr, path)
        with transaction.atomic():
            image.save()
            if row is not None:
                Label.objects.bulk_create(_label_objects(image, row.labels))
            Rating.objects.bulk_create(Rating(image=image, rater=r, values=v) for r, v in ratings)
    except BaseException:
        for path in written:
            default_storage.delete(path)
        raise
    return image


def _write_file(path: str, content: bytes) -> None:
    full = Path(default_storage.path(path))
    full.parent.mkdir(parents=True, exist_ok=True)
    tmp = full.with_suffix(full.suffix + ".part")
    tmp.write_bytes(content)
    tmp.replace(full)


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
                run.note("warning", f"label row for {key!r} {why}", file=LABEL_TABLE, line=row.line)
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
        yield replace(entry, name=pseudonym, read=_scrubbed_reader(entry, pseudonym, run.job))


def _scrubbed_reader(entry: SourceEntry, pseudonym: str, job: ImportJob) -> Callable[[], bytes]:
    """The entry's reader, its errors without the file's path (an OSError or zipfile names the file)."""

    def read() -> bytes:
        try:
            return entry.read()
        except Exception as exc:
            message = _replace_names(str(exc), {entry.name: pseudonym})
            raise SourceError(_scrub_source_names(message, job)) from None

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
    job.report = run.report
    job.n_failed = sum(1 for r in run.report if r["status"] == "failed")
    job.n_skipped = sum(1 for r in run.report if r["status"] == "skipped")
    ImportJob.objects.filter(pk=job.pk).update(report=job.report, n_failed=job.n_failed, n_skipped=job.n_skipped)
