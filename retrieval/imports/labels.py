"""Parsers for label tables uploaded with an image collection.

Pure Python (csv module), no Django import. Three formats:

* ``nih``      ChestX-ray14 ``Data_Entry_2017.csv``: pipe-separated ``Finding Labels``.
* ``chexpert`` CheXpert / MIMIC-CXR-JPG: one column per observation holding 1, 0, -1
               (uncertain) or blank (not mentioned, i.e. missing: the key is left out).
* ``generic``  a file name column plus any columns; numbers become floats, the rest text.
               Columns that look like patient identifiers (`identifier_reason`: a name, birth,
               MRN, NHS/national number, address, phone, e-mail, date… token in the column name,
               or values that are dates or e-mail addresses) are dropped, each with a problem
               line; free-text columns (`free_text_reason`) are refused the same way unless
               the caller allows them; the patient id is the caller's to pseudonymise.

`label_table_columns` says what happens to each column (the preview a coordinator confirms
before an import); `parse_label_table` applies the same plan.

A table that cannot be used at all raises `LabelTableError`; a row that cannot be used
is reported as ``(line, message)`` next to the rows that can. Whether a row names a file
of the collection is the caller's check.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, NamedTuple

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


#: Tokens of a column name (split on anything but letters and digits, and at camelCase) that
#: name a patient identifier. "name" is one unless a thing precedes it (`_NAMED_THINGS`:
#: "file_name", "image_name", "study_name" name a file or a thing, not a person; the column
#: that names the image file is the key column, never a label).
IDENTIFIER_TOKENS: frozenset[str] = frozenset(
    # names
    "name names surname surnames forename forenames firstname lastname givenname familyname fullname "
    "middlename maidenname nickname initials "
    # birth and other personal dates
    "dob dod birth birthdate birthday birthplace birthtime born date dates datetime timestamp "
    # record and national numbers other than the (pseudonymised) patient id
    "mrn ssn nhs nino national passport medicare medicaid insurance accession "
    # addresses and contact
    "address addresses addr street postcode postalcode postal zip zipcode residence city town county "
    "phone telephone tel mobile cellphone fax email contact "
    # where and by whom
    "institution hospital physician physicians doctor referrer referring surgeon clinician "
    "".split()
)
#: Pairs of adjacent tokens that name an identifier (each token alone does not).
IDENTIFIER_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("medical", "record"),
        ("record", "number"),
        ("record", "no"),
        ("record", "id"),
        ("social", "security"),
        ("health", "number"),
        ("health", "no"),
        ("patient", "number"),
        ("patient", "no"),
        ("e", "mail"),
    }
)
#: Glued spellings found inside a lower-cased name with no separators ("patientmrn", "ptdob").
_IDENTIFIER_SUBSTRINGS = tuple(
    "mrn dob ssn nhsn surname forename firstname lastname fullname givenname familyname birth phone "
    "email address postcode zipcode passport accession medicalrecord socialsecurity nationalid "
    "nationalinsurance "
    "".split()
)
_NAMED_THINGS = frozenset(
    "file image img picture view label finding class category model scanner device dataset feature "
    "disease diagnosis condition sequence series study protocol drug organ region body structure "
    "lesion test variable column task set split "
    "".split()
)
#: A last token that makes the column a measure about something, not the thing itself
#: ("surname_score", "dob_known"); its values are still checked (dates, e-mails, free text).
_MEASURE_SUFFIXES = frozenset(
    {"score", "count", "flag", "known", "missing", "present", "valid", "confidence", "quality"}
)
#: Tokens of a column name that hold free text.
FREE_TEXT_TOKENS: frozenset[str] = frozenset(
    "note notes comment comments remark remarks description desc narrative history report reports "
    "impression text freetext memo summary "
    "".split()
)


def column_tokens(column: str) -> list[str]:
    """Lower-case tokens of a column name: split on anything but letters and digits and at
    camelCase ("patientMRN" → patient, mrn; "NHS_no" → nhs, no; "PatientBirthDate" → patient,
    birth, date)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    spaced = re.sub(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", spaced)
    return [t for t in re.split(r"[^0-9a-z]+", spaced.lower()) if t]


def identifier_reason(column: str, values: list[str] = ()) -> str | None:
    """Why a label-table column looks like a patient identifier, or None.

    By name: a token of `IDENTIFIER_TOKENS` or a pair of `IDENTIFIER_PAIRS`, a glued spelling
    (`_IDENTIFIER_SUBSTRINGS`) or an exact name of `IDENTIFIER_COLUMNS`. By value: most values
    are dates, or e-mail addresses.
    """
    tokens = column_tokens(column)
    if tokens and tokens[-1] in _MEASURE_SUFFIXES and len(tokens) > 1:
        tokens = []  # a measure about an identifier: judged by its values only
    else:
        for i, token in enumerate(tokens):
            if token == "name" and i > 0 and tokens[i - 1] in _NAMED_THINGS:
                continue
            if token in IDENTIFIER_TOKENS:
                return f"its name has {token!r}"
        for pair in zip(tokens, tokens[1:], strict=False):
            if pair in IDENTIFIER_PAIRS:
                return f"its name has {' '.join(pair)!r}"
        glued = re.sub(r"[^0-9a-z]", "", column.lower())
        if glued in IDENTIFIER_COLUMNS:
            return "its name is an identifier's"
        hit = next((sub for sub in _IDENTIFIER_SUBSTRINGS if sub in glued), None)
        if hit:
            return f"its name has {hit!r}"
    filled = [v for v in values if v and not _is_nan(v)]
    if filled:
        dates = sum(1 for v in filled if _DATE.fullmatch(v.strip()))
        if dates >= 0.8 * len(filled):
            return "its values are dates"
        emails = sum(1 for v in filled if _EMAIL.search(v))
        if emails >= 0.5 * len(filled):
            return "its values are e-mail addresses"
    return None


def is_identifier_column(column: str) -> bool:
    """Does a label-table column name look like a patient identifier (see `identifier_reason`)?"""
    return identifier_reason(column) is not None


_DATE = re.compile(
    r"(19|20)\d\d[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])([ T]\d{1,2}:\d\d(:\d\d(\.\d+)?)?)?"
    r"|(0?[1-9]|[12]\d|3[01])[-/.](0?[1-9]|1[0-2])[-/.](19|20)?\d\d"
    r"|(0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])[-/.](19|20)?\d\d"
    r"|(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", re.IGNORECASE)

#: Free text, by value: a value longer than this many characters …
FREE_TEXT_MAX_CHARS = 80
#: … or this many words on average …
FREE_TEXT_MEAN_WORDS = 5
#: … or (with at least FREE_TEXT_MIN_ROWS text values) this share of distinct values.
FREE_TEXT_DISTINCT_SHARE = 0.9
FREE_TEXT_MIN_ROWS = 10


def free_text_reason(column: str, values: list[str]) -> str | None:
    """Why a label-table column looks like free text, or None: a free-text token in its name
    (`FREE_TEXT_TOKENS`: notes, comments, description, report…), or text values that are long,
    wordy, or different on almost every row (a label that differs on every row classifies
    nothing; it is a note or an identifier). A column without text values (numbers, blanks) is
    never free text."""
    text = [v for v in values if v and not _is_nan(v) and _number(v) is None]
    if not text:
        return None
    tokens = column_tokens(column)
    if not (len(tokens) > 1 and tokens[-1] in _MEASURE_SUFFIXES):
        hit = next((t for t in tokens if t in FREE_TEXT_TOKENS), None)
        if hit:
            return f"its name has {hit!r}"
    longest = max(len(v) for v in text)
    if longest > FREE_TEXT_MAX_CHARS:
        return f"a value has {longest} characters"
    words = sum(len(v.split()) for v in text) / len(text)
    if words >= FREE_TEXT_MEAN_WORDS:
        return f"its values have {words:.1f} words on average"
    distinct = len(set(text))
    if len(text) >= FREE_TEXT_MIN_ROWS and distinct >= FREE_TEXT_DISTINCT_SHARE * len(text):
        return f"{distinct} of its {len(text)} values differ"
    return None


#: What happens to a column of a label table.
Action = Literal["key", "patient", "view", "label", "identifier", "free_text", "ignored"]

ACTION_TEXT: dict[str, str] = {
    "key": "names the image file",
    "patient": "patient ID: replaced by a pseudonym",
    "view": "view position",
    "label": "imported as a label",
    "identifier": "dropped: looks like a patient identifier",
    "free_text": "refused: free text",
    "ignored": "not read by this format",
}

#: Rows whose values decide whether a column is an identifier or free text (the first ones; a
#: table's plan is the same in the preview and in the import).
PLAN_SAMPLE_ROWS = 5000

#: Sample values shown in the preview, per kept column.
PREVIEW_SAMPLES = 3


@dataclass
class ColumnPlan:
    """One column of a label table and what the import does with it."""

    name: str
    action: Action
    #: Why (for dropped, refused or allowed free-text columns).
    reason: str = ""
    #: A few distinct values, only for columns whose values are imported as they are.
    samples: list[str] = field(default_factory=list)

    @property
    def action_text(self) -> str:
        return ACTION_TEXT[self.action]


@dataclass
class LabelTablePreview:
    columns: list[ColumnPlan]
    rows: int
    problems: Problems


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


class LabelTable:
    """A label table being read: its column plan is known (and an unusable table has raised
    LabelTableError) once opened; `rows()` then yields each row or problem in the table's order,
    reading the stream as it goes (a malformed record further on raises LabelTableError there).
    Memory does not grow with the number of rows: the caller keeps what it needs."""

    def __init__(
        self,
        stream: BinaryIO,
        fmt: Format,
        *,
        filename_column: str | None = None,
        allow_free_text: bool = False,
        dedupe: bool = True,
    ):
        if fmt not in ("nih", "chexpert", "generic"):
            raise LabelTableError(f"unknown label table format {fmt!r} (nih, chexpert or generic)")
        self._table = _Table(stream)
        if fmt == "generic":
            self.plan = _generic_plan(self._table, filename_column, allow_free_text)
            rows = _generic_rows(self._table, self.plan)
        else:
            self.plan = _fixed_plan(self._table, fmt, filename_column)
            parser = _nih_rows if fmt == "nih" else _chexpert_rows
            rows = parser(self._table, filename_column, dedupe)
        # The first item read now: a format's required columns are checked before any row is used.
        first = next(rows, None)
        self._rows = rows if first is None else itertools.chain((first,), rows)
        self.header_line = self._table.header_line

    @property
    def sample(self) -> list[tuple[int, list[str]]]:
        """The first rows (at most PLAN_SAMPLE_ROWS), as cells."""
        return self._table.sample

    def rows(self) -> Iterator[LabelRow | RowProblem]:
        return self._rows

    @property
    def rows_read(self) -> int:
        """Records of the right width read so far."""
        return self._table.rows_read


def parse_label_table(
    data: bytes, fmt: Format, *, filename_column: str | None = None, allow_free_text: bool = False
) -> tuple[list[LabelRow], Problems]:
    """Parse a label table into rows and per-row problems ``(line, message)`` (a small table, in
    memory; an import reads its table with `LabelTable`).

    Generic tables: identifier columns are dropped and free-text columns refused (kept as labels
    when `allow_free_text`), each with a problem line on the header line.
    """
    table = LabelTable(io.BytesIO(data), fmt, filename_column=filename_column, allow_free_text=allow_free_text)
    rows, problems = [], []
    for item in table.rows():
        if isinstance(item, RowProblem):
            problems.append((item.line, item.message))
        else:
            rows.append(item)
    return rows, sorted(problems)


#: Problems listed in a preview; the rest are counted.
PREVIEW_PROBLEMS = 1000


def label_table_columns(
    data: bytes | BinaryIO, fmt: Format, *, filename_column: str | None = None, allow_free_text: bool = False
) -> LabelTablePreview:
    """What an import of this table does with each column (the preview a coordinator confirms):
    key, patient (pseudonymised), view, label, identifier (dropped), free text (refused unless
    allowed) or ignored (a column the NIH/CheXpert format does not read). Sample values are
    shown only for columns imported as they are (labels and view), from the first rows. Raises
    LabelTableError as `parse_label_table` does. The table is read as a stream: at most
    PREVIEW_PROBLEMS problems are listed, the rest counted in one more line."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    table = LabelTable(stream, fmt, filename_column=filename_column, allow_free_text=allow_free_text)
    plan = table.plan
    problems: Problems = []
    unlisted = 0
    for item in table.rows():
        if isinstance(item, RowProblem):
            if len(problems) < PREVIEW_PROBLEMS:
                problems.append((item.line, item.message))
            else:
                unlisted += 1
    rows = table.rows_read
    problems.sort()
    if unlisted:
        problems.append((0, f"{unlisted:,} more problems (not listed)"))
    for index, column in enumerate(plan):
        if column.action in ("label", "view"):
            seen: list[str] = []
            for _, cells in table.sample:
                value = cells[index]
                shown = value[:40] + ("…" if len(value) > 40 else "")
                if value and not _is_nan(value) and shown not in seen:
                    seen.append(shown)
                    if len(seen) == PREVIEW_SAMPLES:
                        break
            column.samples = seen
    return LabelTablePreview(columns=plan, rows=rows, problems=problems)


# --------------------------------------------------------------------------- reading

#: Bytes read at a time while a table is checked (encoding, binary data) before it is parsed.
_CHUNK = 1 << 20
#: The longest first line read to choose the delimiter.
_FIRST_LINE_CHARS = 1 << 20
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\r\n")
_CP1252_UNDEFINED = b"\x81\x8d\x8f\x90\x9d"


class RowProblem(NamedTuple):
    """A problem of one row (or of the header line): `key` is the file name the row gives, if any."""

    line: int
    message: str
    key: str = ""


class _Table:
    """A label table read lazily from a binary stream: the encoding is checked in one pass of
    `_CHUNK`-sized reads, the header and the first PLAN_SAMPLE_ROWS records are read when it is
    opened (an unusable table fails here, before any row is used), the rest as `records()` is
    iterated. Memory does not grow with the number of rows."""

    def __init__(self, stream: BinaryIO):
        encoding = _encoding(stream)
        stream.seek(0)
        text = io.TextIOWrapper(stream, encoding=encoding, newline="")
        first_line = ""
        while not first_line:
            line = text.readline(_FIRST_LINE_CHARS)
            if not line:
                break
            first_line = line.lstrip("\r\n")
        self.delimiter = max(_DELIMITERS, key=first_line.count)
        if first_line.count(self.delimiter) == 0:
            self.delimiter = ","
        text.seek(0)
        self._text = text
        self._reader = csv.reader(text, delimiter=self.delimiter, strict=True)
        self._previous_end = 0
        self._raw = self._raw_records()
        header: list[str] | None = None
        self.header_line = 0
        for start, cells in self._raw:
            header, self.header_line = [c.strip() for c in cells], start
            break
        if header is None:
            raise LabelTableError("empty table: no header line")
        # ChestX-ray14 rows end with a delimiter: drop trailing unnamed empty header cells.
        while header and not header[-1]:
            header.pop()
        if not header:
            raise LabelTableError(f"header line {self.header_line} has no column names")
        named = [h for h in header if h]
        if len(named) != len(header):
            position = header.index("") + 1
            raise LabelTableError(f"column {position} of the header has no name")
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise LabelTableError(f"duplicate column name(s) in the header: {', '.join(duplicates)}")
        self.header = header
        # The first records, read now: they decide the plan of a generic table.
        self._buffer: list[tuple[int, list[str] | str]] = []
        self.sample: list[tuple[int, list[str]]] = []
        raw_first: list[list[str]] = []
        for line, cells in self._raw:
            if len(raw_first) < 20:
                raw_first.append(cells)
            record = self._checked(line, cells)
            self._buffer.append(record)
            if not isinstance(record[1], str):
                self.sample.append(record)
                if len(self.sample) == PLAN_SAMPLE_ROWS:
                    break
        if len(header) == 1 and self.delimiter == "," and any(len(r) > 1 for r in raw_first):
            raise LabelTableError("the header has a single column but the rows have several")
        self._read = False
        self.rows_read = 0

    def _raw_records(self) -> Iterator[tuple[int, list[str]]]:
        try:
            for cells in self._reader:
                start = self._previous_end + 1
                self._previous_end = self._reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                yield start, cells
        except csv.Error as exc:
            raise LabelTableError(
                f"malformed CSV in the record starting at line {self._previous_end + 1}: {exc} (check the quoting)"
            ) from None
        except UnicodeDecodeError as exc:  # the file changed since it was checked
            raise LabelTableError(f"invalid text in the record after line {self._previous_end}: {exc}") from None

    def _checked(self, line: int, cells: list[str]) -> tuple[int, list[str] | str]:
        width = len(self.header)
        while len(cells) > width and not cells[-1].strip():
            cells = cells[:-1]
        if len(cells) != width:
            return line, f"expected {width} columns, found {len(cells)}"
        return line, [c.strip() for c in cells]

    def records(self) -> Iterator[tuple[int, list[str] | str]]:
        """Every record once, in order: (line, stripped cells), or (line, message) for a row of the
        wrong width. Raises LabelTableError on malformed CSV further on."""
        if self._read:
            raise RuntimeError("a label table's records are read once")
        self._read = True
        buffer, self._buffer = self._buffer, []
        for record in itertools.chain(buffer, (self._checked(line, cells) for line, cells in self._raw)):
            if not isinstance(record[1], str):
                self.rows_read += 1
            yield record


def _encoding(stream: BinaryIO) -> str:
    """The table's text encoding, from one pass over its bytes; LabelTableError for what is no text table."""
    stream.seek(0)
    head = stream.read(8)
    if head.startswith(b"PK\x03\x04"):
        raise LabelTableError("this is a ZIP file (an Excel .xlsx workbook?), not a CSV table: export the sheet as CSV")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise LabelTableError("this is an Excel .xls workbook, not a CSV table: export it as CSV")
    stream.seek(0)
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf16_decoder = codecs.getincrementaldecoder("utf-16")()
    is_utf8, is_cp1252, blank, controls, size = True, True, True, 0, 0
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        blank = blank and not chunk.strip()
        if utf16:
            try:
                utf16_decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise LabelTableError(f"invalid UTF-16 text at byte {size + exc.start}") from None
            size += len(chunk)
            continue
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise LabelTableError(
                f"binary data, not a CSV text table (NUL byte at byte {size + nul}); expected UTF-8 or Latin-1 text"
            )
        controls += len(chunk) - len(chunk.translate(None, _CONTROL_BYTES))
        if is_utf8:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError:
                is_utf8 = False
        is_cp1252 = is_cp1252 and len(chunk.translate(None, _CP1252_UNDEFINED)) == len(chunk)
        size += len(chunk)
    if blank:
        raise LabelTableError("empty table: no header line")
    if utf16:
        try:
            utf16_decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise LabelTableError(f"invalid UTF-16 text at byte {size + exc.start}") from None
        return "utf-16"
    if controls > max(2, size // 200):
        raise LabelTableError(f"binary data, not a CSV text table ({controls} control characters)")
    if is_utf8:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    # Not UTF-8: Windows exports are cp1252 (a superset of Latin-1 in 0x80-0x9F); Latin-1 decodes any byte.
    return "utf-8-sig" if is_utf8 else "cp1252" if is_cp1252 else "latin-1"


@dataclass
class _TableData:
    """A whole table in memory (small tables only: dicomweb's UID tables)."""

    header: list[str]
    records: list[tuple[int, list[str]]]
    delimiter: str
    problems: Problems
    header_line: int = 1


def _read_table(data: bytes) -> _TableData:
    table = _Table(io.BytesIO(data))
    records, problems = [], []
    for line, cells in table.records():
        if isinstance(cells, str):
            problems.append((line, cells))
        else:
            records.append((line, cells))
    return _TableData(table.header, records, table.delimiter, problems, table.header_line)


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


def _nih_rows(table: _Table, filename_column: str | None, dedupe: bool = True) -> Iterator[LabelRow | RowProblem]:
    header = table.header
    key_index = _column_or_error(header, filename_column, ("imageindex",), "Image Index")
    labels_index = _find_column(header, ("findinglabels",))
    if labels_index is None:
        raise _missing_column("Finding Labels", header)
    patient_index = _find_column(header, _PATIENT_COLUMNS)
    view_index = _find_column(header, _VIEW_COLUMNS)
    age_index = _find_column(header, ("patientage",))
    gender_index = _find_column(header, ("patientgender", "patientsex"))

    seen: dict[str, int] | None = {} if dedupe else None
    for line, cells in table.records():
        if isinstance(cells, str):
            yield RowProblem(line, cells)
            continue
        key = cells[key_index]
        problem = _check_key(key, line, seen)
        if problem:
            yield problem
            continue
        labels: dict[str, float | str] = {}
        findings_text = cells[labels_index]
        if not findings_text:
            yield RowProblem(line, f"{key}: empty Finding Labels (row kept without findings)", key)
        else:
            present: set[str] = set()
            for raw in findings_text.split("|"):
                name = raw.strip()
                if not name:
                    continue
                canonical = _NIH_CANONICAL.get(_norm(name))
                if canonical is None:
                    yield RowProblem(
                        line, f"{key}: unknown finding {name!r} ignored (known: {', '.join(NIH_LABELS)})", key
                    )
                    continue
                present.add(canonical)
            if NIH_NO_FINDING in present and len(present) > 1:
                yield RowProblem(
                    line, f"{key}: 'No Finding' together with {', '.join(sorted(present - {NIH_NO_FINDING}))}", key
                )
            if present:
                labels.update({name: 1.0 if name in present else 0.0 for name in NIH_LABELS})
        if age_index is not None and cells[age_index]:
            age = _age(cells[age_index])
            if age is None:
                yield RowProblem(line, f"{key}: Patient Age {cells[age_index]!r} is not a number", key)
            else:
                labels["Patient Age"] = age
        if gender_index is not None and cells[gender_index]:
            labels["Patient Gender"] = cells[gender_index]
        yield LabelRow(
            key=key,
            labels=labels,
            patient_id=_cell(cells, patient_index),
            view_position=_view(_cell(cells, view_index)),
            line=line,
        )


# --------------------------------------------------------------------------- CheXpert


def _chexpert_rows(table: _Table, filename_column: str | None, dedupe: bool = True) -> Iterator[LabelRow | RowProblem]:
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

    seen: dict[str, int] | None = {} if dedupe else None
    for line, cells in table.records():
        if isinstance(cells, str):
            yield RowProblem(line, cells)
            continue
        key = cells[key_index]
        problem = _check_key(key, line, seen)
        if problem:
            yield problem
            continue
        labels: dict[str, float | str] = {}
        for index, name in observations.items():
            text = cells[index]
            if not text or _is_nan(text):
                continue  # not mentioned: missing, not negative
            value = _number(text)
            if value not in (1.0, 0.0, -1.0):
                yield RowProblem(line, f"{key}: {name} value {text!r} is not 1, 0, -1 or blank", key)
                continue
            labels[name] = value
        if sex_index is not None and cells[sex_index]:
            labels["Sex"] = cells[sex_index]
        if age_index is not None and cells[age_index]:
            age = _age(cells[age_index])
            if age is None:
                yield RowProblem(line, f"{key}: Age {cells[age_index]!r} is not a number", key)
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
        yield LabelRow(key=key, labels=labels, patient_id=patient_id, view_position=view, line=line)


_OBSERVATION_CANONICAL = {_norm(name): name for name in CHEXPERT_OBSERVATIONS}


def _canonical_observation(column: str) -> str | None:
    return _OBSERVATION_CANONICAL.get(_norm(column))


# --------------------------------------------------------------------------- generic


def _generic_plan(table: _Table, filename_column: str | None, allow_free_text: bool) -> list[ColumnPlan]:
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
    plan = []
    for index, column in enumerate(header):
        if index == key_index:
            plan.append(ColumnPlan(column, "key"))
        elif index == patient_index:
            plan.append(ColumnPlan(column, "patient"))
        elif index == view_index:
            plan.append(ColumnPlan(column, "view"))
        else:
            values = [cells[index] for _, cells in table.sample]
            reason = identifier_reason(column, values)
            if reason:
                plan.append(ColumnPlan(column, "identifier", reason))
                continue
            reason = free_text_reason(column, values)
            if reason and not allow_free_text:
                plan.append(ColumnPlan(column, "free_text", reason))
            else:
                plan.append(ColumnPlan(column, "label", f"free text ({reason}), allowed" if reason else ""))
    return plan


def _fixed_plan(table: _Table, fmt: str, filename_column: str | None) -> list[ColumnPlan]:
    """The columns the NIH or CheXpert parser reads; every other one is ignored."""
    header = table.header
    if fmt == "nih":
        key = _column_or_error(header, filename_column, ("imageindex",), "Image Index")
        labels = {_find_column(header, (c,)) for c in ("findinglabels", "patientage", "patientgender", "patientsex")}
    else:
        key = _column_or_error(header, filename_column, _CHEXPERT_KEY_COLUMNS, "Path", ("dicom_id", "filename"))
        labels = {i for i, h in enumerate(header) if _canonical_observation(h)}
        labels |= {_find_column(header, c) for c in (("sex", "patientsex", "gender"), ("age", "patientage"))}
    patient = _find_column(header, _PATIENT_COLUMNS)
    views = {_find_column(header, _VIEW_COLUMNS)} | (
        {_find_column(header, ("frontallateral",))} if fmt == "chexpert" else set()
    )
    plan = []
    for index, column in enumerate(header):
        if index == key:
            plan.append(ColumnPlan(column, "key"))
        elif index == patient:
            plan.append(ColumnPlan(column, "patient"))
        elif index in views:
            plan.append(ColumnPlan(column, "view"))
        elif index in labels:
            plan.append(ColumnPlan(column, "label"))
        else:
            plan.append(ColumnPlan(column, "ignored"))
    return plan


def _generic_rows(table: _Table, plan: list[ColumnPlan]) -> Iterator[LabelRow | RowProblem]:
    header = table.header
    actions = [column.action for column in plan]
    key_index = actions.index("key")
    patient_index = actions.index("patient") if "patient" in actions else None
    view_index = actions.index("view") if "view" in actions else None
    labelled = [index for index, action in enumerate(actions) if action == "label"]

    # No patient identifier leaves the import: such columns are dropped, each with a report line;
    # free text is refused unless allowed.
    for column in plan:
        if column.action == "identifier":
            yield RowProblem(
                table.header_line, f"column {column.name!r} looks like a patient identifier and was not imported"
            )
        elif column.action == "free_text":
            yield RowProblem(
                table.header_line,
                f"column {column.name!r} looks like free text ({column.reason}) and was not imported; "
                "allow free-text columns to import it",
            )
    for line, cells in table.records():
        if isinstance(cells, str):
            yield RowProblem(line, cells)
            continue
        key = cells[key_index]
        if not key:
            yield RowProblem(line, "empty file name")
            continue
        labels: dict[str, float | str] = {}
        for index in labelled:
            text = cells[index]
            if not text or _is_nan(text):
                continue
            number = _number(text, table.delimiter)
            labels[header[index]] = number if number is not None else text
        yield LabelRow(
            key=key,
            labels=labels,
            patient_id=_cell(cells, patient_index),
            view_position=_view(_cell(cells, view_index)),
            line=line,
        )


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


def _check_key(key: str, line: int, seen: dict[str, int] | None) -> RowProblem | None:
    """A problem with the row's file name: empty, or (`seen` given) named by an earlier row."""
    if not key:
        return RowProblem(line, "empty file name")
    if seen is not None:
        if key in seen:
            return RowProblem(line, f"{key}: duplicate of line {seen[key]} (row ignored)", key)
        seen[key] = line
    return None


def _cell(cells: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    value = cells[index].strip()
    return value or None


def _view(value: str | None) -> str | None:
    return value.upper() if value else None
