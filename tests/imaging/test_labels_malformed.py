"""Unusable tables raise LabelTableError with a precise message, never csv/Unicode errors."""

import numpy as np
import pytest

from retrieval.imports.labels import LabelTableError, parse_label_table


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty table"),
        (b"\n\n  \n", "empty table"),
        (b'filename,label\na.png,"1\nb.png,0\n', "malformed CSV in the record starting at line 2"),
        (b'filename,label\na.png,"1"x\n', "malformed CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not a CSV text table"),
        (b"PK\x03\x04\x14\x00", "ZIP file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Excel .xls"),
        (b"filename,,label\na,b,c\n", "column 2 of the header has no name"),
        (b"filename,label,label\na,b,c\n", "duplicate column name"),
    ],
)
def test_unusable_tables(data, message):
    with pytest.raises(LabelTableError, match=message):
        parse_label_table(data, "generic")


def test_unknown_format():
    with pytest.raises(LabelTableError, match="unknown label table format 'xls'"):
        parse_label_table(b"filename\na\n", "xls")


@pytest.mark.parametrize("fmt", ["nih", "chexpert", "generic"])
def test_random_binary_junk_only_raises_label_table_error(fmt):
    rng = np.random.default_rng(3)
    for _ in range(200):
        data = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        try:
            parse_label_table(data, fmt)
        except LabelTableError:
            pass


def test_utf16_export_is_read():
    data = "filename\tlabel\na.png\t1\n".encode("utf-16")
    rows, _ = parse_label_table(data, "generic")
    assert rows[0].labels == {"label": 1.0}
