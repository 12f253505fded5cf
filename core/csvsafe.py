"""CSV text that a spreadsheet opens as data, never as formulas (OWASP "CSV injection").

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is taken by Excel, LibreOffice
and Google Sheets as a formula (`=HYPERLINK(…)`, `@SUM(…)`, `-2+3+cmd|' /C calc'!A0`), and free text in
an export — a flag comment, a question's text or choices, a label value, a user name — is anyone's to
write. Every CSV the project writes goes through `csv_text` (or `safe_cell`): such a cell gets a leading
apostrophe, which spreadsheets show as text and drop from the value; a carriage return inside a cell
becomes a newline (which is quoted). Plain numbers (`-1`, `-0.25`,
`1e-05`, numeric types) are left as they are, so the data still load as numbers in pandas or R.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)


def safe_cell(value: Any) -> Any:
    """The value, or (a text that a spreadsheet would run as a formula) the text behind an apostrophe."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        value = "'" + value
    # A carriage return inside a cell would not be quoted (the lines end in \n) and would split the row.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def csv_text(rows: Iterable[Sequence[Any] | Mapping[str, Any]], *, header: Sequence[str], dicts: bool = False) -> str:
    """CSV text (lines end in \\n) of a header and rows (sequences, or with dicts=True mappings by column)."""
    buf = io.StringIO()
    if dicts:
        writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
        writer.writerow({name: safe_cell(name) for name in header})
        writer.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
    else:
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([safe_cell(name) for name in header])
        writer.writerows([safe_cell(v) for v in row] for row in rows)
    return buf.getvalue()
