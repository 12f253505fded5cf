"""Images from a PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve (the `dicomweb-client` package).

The endpoints are the administrator's (settings.DICOMWEB_ENDPOINTS: name → URL and credentials); a
coordinator picks one by name, searches it (`search`: patient, study, series, modality, dates; the
patient identifiers of the results are shown on the search page only and never stored) and chooses
studies or series. The import is an ordinary ImportJob with a `DicomwebSource` row holding only the
endpoint's name and the chosen UIDs (retrieval.imports.pacs creates both after checking the PACS
answers and has every chosen UID).

On the worker the ingest wraps its work in `retrieved(job)`: the chosen instances are retrieved one at a
time (WADO-RS, series by series; at most IMPORT_MAX_ARCHIVE_MEMBERS instances) into a folder of their
own under UPLOAD_ROOT, named `StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID`, and the ordinary
folder import runs on it: de-identification, the middle slice of a CT/MR/PT series, duplicates, the
per-file limits, the report and its rules are the folder import's own code. The folder holds the
PACS's identified files, so it is removed when the import ends, whatever happened, and a folder left
by a killed worker is removed by the next PACS import. A PACS that cannot be reached, refuses the
credentials or lacks a chosen study fails the import before any image is created, with a message
that says which.

A label table of a PACS import may name images by UID: a generic table with a `SOPInstanceUID`,
`SeriesInstanceUID` or `StudyInstanceUID` column (the most specific one present is the key) is
translated, before the ingest reads it, into a table keyed by the retrieved files: a row naming a
study or a series labels every image imported from it. Without such a column the table names files by
their relative path (`study/series/sop`, or the SOPInstanceUID alone) like any folder import.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from pydicom.datadict import tag_for_keyword

from core.jobs import JobStatus, job_progress
from retrieval.imports import labels as label_tables
from retrieval.imports.imaging.dicom import DicomHeader, read_dicom_header
from retrieval.imports.imaging.errors import ImageDecodeError
from retrieval.imports.imaging.series import group_series, middle
from retrieval.imports.sources import SourceError
from retrieval.models import DicomwebSource, ImportJob, LabelFormat

SOURCE_PREFIX = "dicomweb:"  # ImportJob.source_path of a PACS import: "dicomweb:<endpoint>"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class DicomwebError(SourceError):
    """The PACS cannot be used for this import (unreachable, refusing, missing a study); the message says why."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    username: str = ""
    password: str = ""
    token: str = ""
    timeout: float = 30.0
    verify: bool | str = True

    @property
    def label(self) -> str:
        return self.url if self.name == self.url else f"{self.name!r} ({self.url})"


def endpoint_names() -> list[str]:
    return sorted(settings.DICOMWEB_ENDPOINTS)


def endpoint_resolve(value: str, *, allow_url: bool = False) -> Endpoint:
    """A configured endpoint by name; with allow_url (`manage.py import_dicomweb`), also a URL: the configured
    endpoint of that URL (with its credentials) or an anonymous one. Web pages and the API name endpoints only,
    so nobody makes the server request an address the administrator did not configure."""
    configured = settings.DICOMWEB_ENDPOINTS
    if value in configured:
        return Endpoint(name=value, **configured[value])
    if allow_url and value.startswith(("http://", "https://")):
        for name, conf in configured.items():
            if conf["url"].rstrip("/") == value.rstrip("/"):
                return Endpoint(name=name, **conf)
        return Endpoint(name=value, url=value)
    known = ", ".join(repr(n) for n in endpoint_names()) or "none (set DICOMWEB_ENDPOINTS)"
    raise DicomwebError(f"No DICOMweb endpoint named {value!r}; configured endpoints: {known}.")


def parse_uid(value: str, what: str = "UID") -> str:
    value = str(value).strip()
    if not _UID.match(value) or len(value) > 64:
        raise DicomwebError(f"{what} {value[:80]!r} is not a DICOM UID (digits and dots, at most 64 characters).")
    return value


def parse_selection(value: str) -> dict[str, str]:
    """ "STUDY" (a whole study) or "STUDY/SERIES" (one series) → {"study": …, "series": … or ""}."""
    study, _, series = str(value).strip().partition("/")
    return {
        "study": parse_uid(study, "StudyInstanceUID"),
        "series": parse_uid(series, "SeriesInstanceUID") if series else "",
    }


# --------------------------------------------------------------------------- talking to the PACS


def _client(endpoint: Endpoint) -> DICOMwebClient:
    session = requests.Session()
    session.verify = endpoint.verify
    if endpoint.username:
        session.auth = (endpoint.username, endpoint.password)
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else None
    client = DICOMwebClient(url=endpoint.url, session=session, headers=headers, timeout=endpoint.timeout)
    client.set_http_retry_params(retry=False)  # an error is reported at once, not after minutes of retries
    return client


@contextmanager
def _answers(endpoint: Endpoint, what: str) -> Iterator[None]:
    """Turn what requests and dicomweb-client raise into a DicomwebError saying what went wrong."""
    try:
        yield
    except DicomwebError:
        raise
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            raise DicomwebError(
                f"PACS {endpoint.label} refused {what} (HTTP {status}): check the endpoint's username and password "
                "or token in DICOMWEB_ENDPOINTS."
            ) from None
        if status == 404:
            raise DicomwebError(f"PACS {endpoint.label}: {what} found nothing (HTTP 404).") from None
        raise DicomwebError(f"PACS {endpoint.label} answered HTTP {status} to {what}.") from None
    except requests.exceptions.SSLError as exc:
        raise DicomwebError(f"PACS {endpoint.label}: TLS failed during {what} ({exc}).") from None
    except requests.Timeout:
        raise DicomwebError(f"PACS {endpoint.label} did not answer {what} within {endpoint.timeout:g} s.") from None
    except requests.ConnectionError:
        raise DicomwebError(
            f"PACS {endpoint.label} cannot be reached ({what}): is the URL right and the server up?"
        ) from None
    except requests.RequestException as exc:
        raise DicomwebError(f"PACS {endpoint.label}: {what} failed ({exc}).") from None
    except ValueError as exc:  # not DICOM JSON / not a multipart DICOM answer
        raise DicomwebError(f"PACS {endpoint.label} gave an unreadable answer to {what} ({exc}).") from None


def _value(item: dict, keyword: str):
    """The first value of a DICOM JSON attribute (a person name as its alphabetic form), or ''."""
    values = item.get(f"{tag_for_keyword(keyword):08X}", {}).get("Value") or [""]
    value = values[0]
    return value.get("Alphabetic", "") if isinstance(value, dict) else value


@dataclass(frozen=True)
class SearchRow:
    """One study or series found (shown to the coordinator, never stored)."""

    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modality: str
    description: str
    instances: int | None

    @property
    def selection(self) -> str:
        return f"{self.study_uid}/{self.series_uid}" if self.series_uid else self.study_uid


def search(
    endpoint: Endpoint,
    *,
    level: str = "study",
    patient_id: str = "",
    patient_name: str = "",
    study_uid: str = "",
    modality: str = "",
    date_from: str = "",
    date_to: str = "",
    limit: int = 100,
) -> list[SearchRow]:
    """QIDO-RS search of studies (level "study") or series ("series"); dates as YYYYMMDD."""
    filters: dict[str, str] = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if patient_name:
        filters["PatientName"] = patient_name
    if study_uid:
        filters["StudyInstanceUID"] = parse_uid(study_uid, "StudyInstanceUID")
    if modality:
        filters["ModalitiesInStudy" if level == "study" else "Modality"] = modality.upper()
    if date_from or date_to:
        filters["StudyDate"] = f"{date_from}-{date_to}" if date_from != date_to else date_from
    fields = ["PatientID", "PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy"]
    client = _client(endpoint)
    with _answers(endpoint, f"the {level} search"):
        if level == "series":
            found = client.search_for_series(
                search_filters=filters, limit=limit, fields=[*fields, "SeriesDescription", "Modality"]
            )
        else:
            found = client.search_for_studies(search_filters=filters, limit=limit, fields=fields)
    rows = []
    for item in found:
        count = _value(item, "NumberOfSeriesRelatedInstances" if level == "series" else "NumberOfStudyRelatedInstances")
        modalities = item.get(f"{tag_for_keyword('ModalitiesInStudy'):08X}", {}).get("Value") or []
        rows.append(
            SearchRow(
                study_uid=_value(item, "StudyInstanceUID"),
                series_uid=_value(item, "SeriesInstanceUID") if level == "series" else "",
                patient_id=str(_value(item, "PatientID")),
                patient_name=str(_value(item, "PatientName")),
                study_date=str(_value(item, "StudyDate")),
                modality=str(_value(item, "Modality")) if level == "series" else "/".join(map(str, modalities)),
                description=str(_value(item, "SeriesDescription" if level == "series" else "StudyDescription")),
                instances=int(count) if str(count).isdigit() else None,
            )
        )
    return rows


def _series_of(client: DICOMwebClient, endpoint: Endpoint, selection: dict[str, str]) -> list[tuple[str, int | None]]:
    """(SeriesInstanceUID, instance count) of a selection; DicomwebError when the PACS lacks it."""
    study, series = selection["study"], selection["series"]
    filters = {"SeriesInstanceUID": series} if series else None
    what = f"series {series} of study {study}" if series else f"study {study}"
    with _answers(endpoint, f"the search for {what}"):
        found = client.search_for_series(study_instance_uid=study, search_filters=filters)
    out = []
    for item in found:
        uid = str(_value(item, "SeriesInstanceUID"))
        count = str(_value(item, "NumberOfSeriesRelatedInstances"))
        if uid and (not series or uid == series):
            out.append((uid, int(count) if count.isdigit() else None))
    if not out:
        raise DicomwebError(f"PACS {endpoint.label} has no {what}.")
    return out


def plan(endpoint: Endpoint, selections: list[dict[str, str]]) -> list[tuple[str, str, int | None]]:
    """Every (study, series, instance count) the selections name, each once; DicomwebError when the PACS cannot
    be reached, refuses, lacks a chosen study or series, or when they hold more instances than an import may."""
    client = _client(endpoint)
    out: dict[tuple[str, str], int | None] = {}
    for selection in selections:
        for series, count in _series_of(client, endpoint, selection):
            out.setdefault((selection["study"], series), count)
    total = sum(c or 0 for c in out.values())
    if total > settings.IMPORT_MAX_ARCHIVE_MEMBERS:
        raise DicomwebError(
            f"The selection holds {total:,} instances, more than an import may (IMPORT_MAX_ARCHIVE_MEMBERS = "
            f"{settings.IMPORT_MAX_ARCHIVE_MEMBERS:,}): choose fewer studies or series."
        )
    return [(study, series, count) for (study, series), count in out.items()]


@dataclass(frozen=True)
class Retrieved:
    name: str  # "study/series/sop", relative to the folder
    header: DicomHeader | None


def retrieve(
    endpoint: Endpoint,
    selections: list[dict[str, str]],
    folder: Path,
    *,
    progress: Callable[[int, int, str], None] = lambda done, total, note: None,
) -> list[Retrieved]:
    """WADO-RS retrieve of the selections into `folder`, one instance in memory at a time."""
    series_list = plan(endpoint, selections)
    total = sum(c or 0 for *_, c in series_list)
    client = _client(endpoint)
    out: list[Retrieved] = []
    seen: set[str] = set()
    for study, series, _count in series_list:
        with _answers(endpoint, f"the retrieval of series {series} of study {study}"):
            for ds in client.iter_series(study, series):
                sop = str(ds.get("SOPInstanceUID", ""))
                if not _UID.match(sop) or len(sop) > 64:
                    sop = f"instance-{len(out) + 1}"
                if sop in seen:
                    continue
                seen.add(sop)
                if len(seen) > settings.IMPORT_MAX_ARCHIVE_MEMBERS:
                    raise DicomwebError(
                        f"PACS {endpoint.label} sent more than IMPORT_MAX_ARCHIVE_MEMBERS = "
                        f"{settings.IMPORT_MAX_ARCHIVE_MEMBERS:,} instances."
                    )
                data = _part10(ds)
                del ds
                name = f"{study}/{series}/{sop}"
                path = folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                try:
                    header = read_dicom_header(data)
                except ImageDecodeError:
                    header = None  # the ingest reports it
                out.append(Retrieved(name=name, header=header))
                progress(len(out), max(total, len(out)), f"retrieving from PACS {endpoint.name}: {len(out)} instances")
    return out


def _part10(ds: pydicom.Dataset) -> bytes:
    """A retrieved instance as a DICOM file's bytes (its data set and transfer syntax as sent, written by pydicom)."""
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except (AttributeError, ValueError):
        ds.save_as(buffer, implicit_vr=False, little_endian=True)  # no file meta: written as explicit VR LE
    return buffer.getvalue()


# --------------------------------------------------------------------------- the ingest's hook


@contextmanager
def retrieved(job: ImportJob) -> Iterator[None]:
    """For a PACS import (a job with a DicomwebSource): its instances retrieved into a folder of their own, which
    `job.source_path` names while the ingest runs (and a UID-keyed label table translated next to it); the folder
    is removed afterwards. Any other import: nothing happens."""
    source = DicomwebSource.objects.filter(job=job).first()
    if source is None:
        yield
        return
    root = settings.UPLOAD_ROOT / "dicomweb"
    _remove_stale(root)
    folder = root / f"job-{job.pk}"
    shutil.rmtree(folder, ignore_errors=True)  # a resumed job retrieves afresh
    stored_source, stored_labels = job.source_path, job.labels_path
    try:
        images = folder / "images"
        images.mkdir(parents=True)
        endpoint = endpoint_resolve(source.endpoint, allow_url=True)
        files = retrieve(
            endpoint,
            source.selections,
            images,
            progress=lambda done, total, note: job_progress(job, done=done, total=total, note=note),
        )
        if not files:
            raise DicomwebError(f"PACS {endpoint.label} sent no instance for the chosen studies and series.")
        job.source_path = str(images)
        if stored_labels and job.label_format == LabelFormat.GENERIC:
            job.labels_path = str(translate_uid_table(Path(stored_labels), files, folder / "labels"))
        yield
    finally:
        job.source_path, job.labels_path = stored_source, stored_labels
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale(root: Path) -> None:
    """Remove folders left by PACS imports whose worker was killed (the job is no longer running)."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pk = folder.name.removeprefix("job-")
        running = pk.isdigit() and ImportJob.objects.filter(pk=int(pk), status=JobStatus.RUNNING).exists()
        if not running:
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- label tables keyed by UID

UID_COLUMNS = (("sopinstanceuid", "sop"), ("seriesinstanceuid", "series"), ("studyinstanceuid", "study"))


def uid_key_column(path: str | Path) -> str | None:
    """The header of the UID column that keys a generic table of a PACS import (the most specific of
    SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID), as `translate_uid_table` picks it; None without one.
    Reads the header only."""
    try:
        with Path(path).open("rb") as stream:
            header = label_tables._Table(stream).header
    except label_tables.LabelTableError:
        return None  # the preview reports what is wrong with it
    normalised = [label_tables._norm(h) for h in header]
    return next((header[normalised.index(col)] for col, _ in UID_COLUMNS if col in normalised), None)


def translate_uid_table(path: Path, files: list[Retrieved], out_dir: Path) -> Path:
    """A generic label table keyed by SOPInstanceUID, SeriesInstanceUID or StudyInstanceUID, rewritten as one keyed
    by the retrieved files (the image each series becomes: its middle slice); any other table is returned as is.

    Rows keep their line numbers (a row labelling several images is repeated at the end of the table); a row whose
    UID names no retrieved instance keeps the UID, and the ingest reports that it names no imported file.
    """
    data = path.read_bytes()
    try:
        table = label_tables._read_table(data)
    except label_tables.LabelTableError:
        return path  # the ingest reports what is wrong with it
    normalised = [label_tables._norm(h) for h in table.header]
    found = next(((normalised.index(col), level) for col, level in UID_COLUMNS if col in normalised), None)
    if found is None:
        return path
    column, level = found
    headers = {f.name: f.header for f in files if f.header is not None}
    images = [middle(group) for group in group_series([(n, h) for n, h in headers.items()])]
    targets: dict[str, list[str]] = {}
    for name in images:
        study, series, sop = name.split("/")
        header = headers[name]
        uid = {"study": header.study_uid or study, "series": header.series_uid or series}.get(level)
        uid = uid if level != "sop" else header.sop_instance_uid
        targets.setdefault(str(uid or sop), []).append(name)
    if level == "sop":  # a SOP key that is not an image's (a slice other than the middle one) names its own file
        for f in files:
            targets.setdefault(f.name.rsplit("/", 1)[-1], [f.name])
    header = list(table.header)
    header[column] = "filename"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=table.delimiter, lineterminator="\n")
    out.write("\n" * (table.header_line - 1))
    writer.writerow(header)
    line = table.header_line + 1
    extra = []
    for start, cells in table.records:
        out.write("\n" * max(0, start - line))
        line = max(line, start)
        names = targets.get(cells[column].strip(), [cells[column].strip()])
        row = list(cells)
        row[column] = names[0]
        writer.writerow(row)
        line += 1 + sum(c.count("\n") for c in row)
        extra.extend([*cells[:column], n, *cells[column + 1 :]] for n in names[1:])
    writer.writerows(extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    translated = out_dir / path.name
    translated.write_text(out.getvalue(), encoding="utf-8")
    return translated
