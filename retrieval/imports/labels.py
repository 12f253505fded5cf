"""Parsers for label tables uploaded with an image collection.

Pure Python (csv module), no Django import. Three formats:

* ``nih``      ChestX-ray14 ``Data_Entry_2017.csv``: pipe-separated ``Finding Labels``.
* ``chexpert`` CheXpert / MIMIC-CXR-JPG: one column per observation holding 1, 0, -1
               (uncertain) or blank (not mentioned, i.e. missing: the key is left out).
* ``generic``  a file name column plus any columns; numbers become floats, the rest text.
               Columns that look like patient identifiers (`IDENTIFIER_COLUMNS`: name, birth
               date, MRN, address, phone, accession number, institution, physicians…) are
               dropped, each with a problem line; the patient id is the caller's to pseudonymise.

A table that cannot be used at all raises `LabelTableError`; a row that cannot be used
is reported as ``(line, message)`` next to the rows that can. Whether a row names a file
of the collection is the caller's check.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Literal

Format = Literal["nih", "chexpert", "generic"]

#: The 14 ChestX-ray14 findings, spelled as in Data_Entry_2017.csv, plus "No Finding".
NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
NIH_NO_FINDING = "No Finding"
NIH_LABELS: tuple[str, ...] = NIH_FINDINGS + (NIH_NO_FINDING,)

#: The 14 CheXpert observations (also the MIMIC-CXR-JPG label columns).
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

_GENERIC_KEY_COLUMNS = ("filename", "file", "image", "path", "imageindex")
_CHEXPERT_KEY_COLUMNS = ("path", "dicomid", "filename")
_PATIENT_COLUMNS = ("patientid", "subjectid")
_VIEW_COLUMNS = ("viewposition", "appa")
_DELIMITERS = (",", ";", "\t")

#: Generic-table columns that look like patient identifiers and are never imported (compared
#: lower-cased with everything but letters and digits removed: "Patient's Name", "patient_name"
#: and "PatientName" are all "patientname"). They mirror the
#: person- and place-identifying DICOM attributes the importer blanks or removes
#: (retrieval.imports.imaging.deid.BLANKED_KEYWORDS / REMOVED_KEYWORDS: PatientName, PatientBirthDate,
#: OtherPatientIDs, MedicalRecordLocator, PatientAddress, PatientTelephoneNumbers,
#: AccessionNumber, InstitutionName, ReferringPhysicianName, …) plus the usual spreadsheet
#: spellings of the same things (dob, mrn, phone, email, ssn, …). The patient id column itself
#: (`patient_id`, `subject_id`) is not dropped: it is pseudonymised. Patient characteristics that
#: the DICOM profile retains (sex, age, size, weight) stay labels.
IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {
        # names
        "name",
        "patientname",
        "patientsname",
        "fullname",
        "firstname",
        "lastname",
        "surname",
        "givenname",
        "familyname",
        "middlename",
        "maidenname",
        "patientbirthname",
        "patientmotherbirthname",
        "mothersmaidenname",
        "otherpatientnames",
        "personname",
        # birth
        "birthdate",
        "dateofbirth",
        "dob",
        "birthday",
        "patientbirthdate",
        "patientbirthtime",
        "birthtime",
        # identifiers other than the (pseudonymised) patient id
        "mrn",
        "medicalrecordnumber",
        "medicalrecordno",
        "medicalrecordlocator",
        "recordnumber",
        "hospitalnumber",
        "otherpatientids",
        "issuerofpatientid",
        "ssn",
        "socialsecuritynumber",
        "nhsnumber",
        "insurancenumber",
        "insuranceplanidentification",
        "admissionid",
        "serviceepisodeid",
        "accessionnumber",
        "accession",
        "accessionno",
        "accnumber",
        # addresses and contact
        "address",
        "patientaddress",
        "personaddress",
        "streetaddress",
        "street",
        "postcode",
        "postalcode",
        "zip",
        "zipcode",
        "regionofresidence",
        "countryofresidence",
        "phone",
        "phonenumber",
        "telephone",
        "telephonenumber",
        "patienttelephonenumbers",
        "persontelephonenumbers",
        "patienttelecominformation",
        "mobile",
        "email",
        "emailaddress",
        # where and by whom
        "institution",
        "institutionname",
        "institutionaddress",
        "institutionaldepartmentname",
        "hospital",
        "referringphysician",
        "referringphysicianname",
        "referringphysicianaddress",
        "referringphysiciantelephonenumbers",
        "performingphysicianname",
        "physiciansofrecord",
        "nameofphysiciansreadingstudy",
        "requestingphysician",
        "operatorsname",
    }
)


def is_identifier_column(column: str) -> bool:
    """Does a label-table column name look like a patient identifier (see IDENTIFIER_COLUMNS)?"""
    return re.sub(r"[^0-9a-z]", "", column.lower()) in IDENTIFIER_COLUMNS


class LabelTableError(ValueError):
    """The table cannot be used at all; the message says why."""


@dataclass
class LabelRow:
    #: File name or relative path exactly as written in the table.
    key: str
    labels: dict[str, float | str] = field(default_factory=dict)
    #: Raw patient identifier: the caller pseudonymises it.
    patient_id: str | None = None
    view_position: str | None = None
    #: 1-based line of the table where the row starts (the header is line 1).
    line: int = 0


Problems = list[tuple[int, str]]


def parse_label_table(
    data: bytes, fmt: Format, *, filename_column: str | None = None
) -> tuple[list[LabelRow], Problems]:
    """Parse a label table into rows and per-row problems ``(line, message)``."""
    parsers = {"nih": _parse_nih, "chexpert": _parse_chexpert, "generic": _parse_generic}
    if fmt not in parsers:
        raise LabelTableError(f"unknown label table format {fmt!r} (nih, chexpert or generic)")
    table = _read_table(data)
    return parsers[fmt](table, filename_column)


# --------------------------------------------------------------------------- reading


@dataclass
class _Table:
    header: list[str]
    #: (start line, cells) per non-blank record, cells padded/trimmed as read.
    records: list[tuple[int, list[str]]]
    delimiter: str
    problems: Problems
    #: 1-based line of the header (blank lines may precede it).
    header_line: int = 1


def _decode(data: bytes) -> str:
    if not data or not data.strip():
        raise LabelTableError("empty table: no header line")
    if data.startswith(b"PK\x03\x04"):
        raise LabelTableError("this is a ZIP file (an Excel .xlsx workbook?), not a CSV table: export the sheet as CSV")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise LabelTableError("this is an Excel .xls workbook, not a CSV table: export it as CSV")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LabelTableError(f"invalid UTF-16 text at byte {exc.start}") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise LabelTableError(
            f"binary data, not a CSV text table (NUL byte at byte {nul}); expected UTF-8 or Latin-1 text"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: Windows exports are cp1252 (a superset of Latin-1 in 0x80-0x9F);
        # Latin-1 decodes any remaining byte.
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n")
    if controls > max(2, len(text) // 200):
        raise LabelTableError(f"binary data, not a CSV text table ({controls} control characters)")
    return text


def _read_table(data: bytes) -> _Table:
    text = _decode(data)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = max(_DELIMITERS, key=first_line.count)
    if first_line.count(delimiter) == 0:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    records: list[tuple[int, list[str]]] = []
    problems: Problems = []
    previous_end = 0
    try:
        for cells in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if header is None:
                header, header_line = [c.strip() for c in cells], start
                continue
            records.append((start, cells))
    except csv.Error as exc:
        raise LabelTableError(
            f"malformed CSV in the record starting at line {previous_end + 1}: {exc} (check the quoting)"
        ) from None
    if header is None:
        raise LabelTableError("empty table: no header line")
    # ChestX-ray14 rows end with a delimiter: drop trailing unnamed empty header cells.
    while header and not header[-1]:
        header.pop()
    if not header:
        raise LabelTableError(f"header line {header_line} has no column names")
    named = [h for h in header if h]
    if len(named) != len(header):
        position = header.index("") + 1
        raise LabelTableError(f"column {position} of the header has no name")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise LabelTableError(f"duplicate column name(s) in the header: {', '.join(duplicates)}")
    if len(header) == 1 and delimiter == "," and len(records) and any(len(r) > 1 for _, r in records[:20]):
        raise LabelTableError("the header has a single column but the rows have several")
    width = len(header)
    kept: list[tuple[int, list[str]]] = []
    for line, cells in records:
        while len(cells) > width and not cells[-1].strip():
            cells = cells[:-1]
        if len(cells) != width:
            problems.append((line, f"expected {width} columns, found {len(cells)}"))
            continue
        kept.append((line, [c.strip() for c in cells]))
    return _Table(header=header, records=kept, delimiter=delimiter, problems=problems, header_line=header_line)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-/#\[\]().]+", "", name).lower()


def _find_column(header: list[str], candidates: tuple[str, ...]) -> int | None:
    normalised = [_norm(h) for h in header]
    for candidate in candidates:
        if candidate in normalised:
            return normalised.index(candidate)
    return None


def _missing_column(name: str, header: list[str], alternatives: tuple[str, ...] = ()) -> LabelTableError:
    also = f" (or {', '.join(alternatives)})" if alternatives else ""
    return LabelTableError(f"required column {name!r}{also} not found; columns found: {', '.join(header)}")


def _number(text: str, delimiter: str = ",") -> float | None:
    """A finite float from `text`, or None. Accepts a decimal comma in ';' tables."""
    candidate = text.strip()
    if delimiter == ";" and re.fullmatch(r"[+-]?\d+,\d+", candidate):
        candidate = candidate.replace(",", ".")
    try:
        value = float(candidate)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_nan(text: str) -> bool:
    return text.strip().lower() in ("nan", "na", "n/a", "null", "none")


def _age(text: str) -> float | None:
    """Years from '58', '58.5' or a DICOM age string such as '058Y', '006M', '010D'."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMYdwmy])\s*", text)
    if match:
        value = float(match.group(1))
        return value / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[match.group(2).upper()]
    return _number(text)


# --------------------------------------------------------------------------- NIH


_NIH_CANONICAL = {_norm(name): name for name in NIH_LABELS}


def _parse_nih(table: _Table, filename_column: str | None):
    header = table.header
    key_index = _column_or_error(header, filename_column, ("imageindex",), "Image Index")
    labels_index = _find_column(header, ("findinglabels",))
    if labels_index is None:
        raise _missing_column("Finding Labels", header)
    patient_index = _find_column(header, _PATIENT_COLUMNS)
    view_index = _find_column(header, _VIEW_COLUMNS)
    age_index = _find_column(header, ("patientage",))
    gender_index = _find_column(header, ("patientgender", "patientsex"))

    rows: list[LabelRow] = []
    problems = list(table.problems)
    seen: dict[str, int] = {}
    for line, cells in table.records:
        key = cells[key_index]
        if not _check_key(key, line, seen, problems):
            continue
        labels: dict[str, float | str] = {}
        findings_text = cells[labels_index]
        if not findings_text:
            problems.append((line, f"{key}: empty Finding Labels (row kept without findings)"))
        else:
            present: set[str] = set()
            for raw in findings_text.split("|"):
                name = raw.strip()
                if not name:
                    continue
                canonical = _NIH_CANONICAL.get(_norm(name))
                if canonical is None:
                    problems.append((line, f"{key}: unknown finding {name!r} ignored (known: {', '.join(NIH_LABELS)})"))
                    continue
                present.add(canonical)
            if NIH_NO_FINDING in present and len(present) > 1:
                problems.append(
                    (line, f"{key}: 'No Finding' together with {', '.join(sorted(present - {NIH_NO_FINDING}))}")
                )
            if present:
                labels.update({name: 1.0 if name in present else 0.0 for name in NIH_LABELS})
        if age_index is not None and cells[age_index]:
            age = _age(cells[age_index])
            if age is None:
                problems.append((line, f"{key}: Patient Age {cells[age_index]!r} is not a number"))
            else:
                labels["Patient Age"] = age
        if gender_index is not None and cells[gender_index]:
            labels["Patient Gender"] = cells[gender_index]
        rows.append(
            LabelRow(
                key=key,
                labels=labels,
                patient_id=_cell(cells, patient_index),
                view_position=_view(_cell(cells, view_index)),
                line=line,
            )
        )
    return rows, sorted(problems)


# --------------------------------------------------------------------------- CheXpert


def _parse_chexpert(table: _Table, filename_column: str | None):
    header = table.header
    key_index = _column_or_error(header, filename_column, _CHEXPERT_KEY_COLUMNS, "Path", ("dicom_id", "filename"))
    observations = {
        index: name
        for index, name in ((i, _canonical_observation(h)) for i, h in enumerate(header))
        if name is not None
    }
    if not observations:
        raise LabelTableError(
            "no observation columns found (expected some of: "
            f"{', '.join(CHEXPERT_OBSERVATIONS)}); columns found: {', '.join(header)}"
        )
    patient_index = _find_column(header, _PATIENT_COLUMNS)
    view_index = _find_column(header, _VIEW_COLUMNS)
    frontal_index = _find_column(header, ("frontallateral",))
    sex_index = _find_column(header, ("sex", "patientsex", "gender"))
    age_index = _find_column(header, ("age", "patientage"))

    rows: list[LabelRow] = []
    problems = list(table.problems)
    seen: dict[str, int] = {}
    for line, cells in table.records:
        key = cells[key_index]
        if not _check_key(key, line, seen, problems):
            continue
        labels: dict[str, float | str] = {}
        for index, name in observations.items():
            text = cells[index]
            if not text or _is_nan(text):
                continue  # not mentioned: missing, not negative
            value = _number(text)
            if value not in (1.0, 0.0, -1.0):
                problems.append((line, f"{key}: {name} value {text!r} is not 1, 0, -1 or blank"))
                continue
            labels[name] = value
        if sex_index is not None and cells[sex_index]:
            labels["Sex"] = cells[sex_index]
        if age_index is not None and cells[age_index]:
            age = _age(cells[age_index])
            if age is None:
                problems.append((line, f"{key}: Age {cells[age_index]!r} is not a number"))
            else:
                labels["Age"] = age
        patient_id = _cell(cells, patient_index)
        if patient_id is None:
            match = re.search(r"(patient\d+)", key, flags=re.IGNORECASE)
            patient_id = match.group(1) if match else None
        view = _view(_cell(cells, view_index))
        if view is None and frontal_index is not None:
            if cells[frontal_index].strip().lower() == "lateral":
                view = "LATERAL"
        rows.append(LabelRow(key=key, labels=labels, patient_id=patient_id, view_position=view, line=line))
    return rows, sorted(problems)


_OBSERVATION_CANONICAL = {_norm(name): name for name in CHEXPERT_OBSERVATIONS}


def _canonical_observation(column: str) -> str | None:
    return _OBSERVATION_CANONICAL.get(_norm(column))


# --------------------------------------------------------------------------- generic


def _parse_generic(table: _Table, filename_column: str | None):
    header = table.header
    key_index = _column_or_error(
        header,
        filename_column,
        _GENERIC_KEY_COLUMNS,
        "filename",
        ("file", "image", "path", "Image Index"),
    )
    patient_index = _find_column(header, _PATIENT_COLUMNS)
    view_index = _find_column(header, ("viewposition",))
    special = {key_index, patient_index, view_index} - {None}

    rows: list[LabelRow] = []
    problems = list(table.problems)
    # No patient identifier leaves the import: such columns are dropped, each with a report line.
    for index, column in enumerate(header):
        if index not in special and is_identifier_column(column):
            special.add(index)
            problems.append(
                (table.header_line, f"column {column!r} looks like a patient identifier and was not imported")
            )
    for line, cells in table.records:
        key = cells[key_index]
        if not key:
            problems.append((line, "empty file name"))
            continue
        labels: dict[str, float | str] = {}
        for index, column in enumerate(header):
            if index in special:
                continue
            text = cells[index]
            if not text or _is_nan(text):
                continue
            number = _number(text, table.delimiter)
            labels[column] = number if number is not None else text
        rows.append(
            LabelRow(
                key=key,
                labels=labels,
                patient_id=_cell(cells, patient_index),
                view_position=_view(_cell(cells, view_index)),
                line=line,
            )
        )
    return rows, sorted(problems)


# --------------------------------------------------------------------------- helpers


def _column_or_error(
    header: list[str],
    explicit: str | None,
    candidates: tuple[str, ...],
    name: str,
    alternatives: tuple[str, ...] = (),
) -> int:
    if explicit is not None:
        if explicit in header:
            return header.index(explicit)
        index = _find_column(header, (_norm(explicit),))
        if index is None:
            raise _missing_column(explicit, header)
        return index
    index = _find_column(header, candidates)
    if index is None:
        raise _missing_column(name, header, alternatives)
    return index


def _check_key(key: str, line: int, seen: dict[str, int], problems: Problems) -> bool:
    if not key:
        problems.append((line, "empty file name"))
        return False
    if key in seen:
        problems.append((line, f"{key}: duplicate of line {seen[key]} (row ignored)"))
        return False
    seen[key] = line
    return True


def _cell(cells: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    value = cells[index].strip()
    return value or None


def _view(value: str | None) -> str | None:
    return value.upper() if value else None
