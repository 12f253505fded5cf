"""Generic tables: a file name column plus anything; several rows per file allowed."""

import pytest

from retrieval.labels import LabelTableError, parse_label_table


def test_numbers_text_patient_and_view():
    data = (
        b"filename,patient_id,view_position,ctr,diagnosis,score\n"
        b"a.png,P1,pa,0.52,cardiomegaly,3\n"
        b"b.png,P2,AP,,normal,nan\n"
    )
    rows, problems = parse_label_table(data, "generic")
    assert problems == []
    a, b = rows
    assert a.labels == {"ctr": 0.52, "diagnosis": "cardiomegaly", "score": 3.0}
    assert (a.patient_id, a.view_position) == ("P1", "PA")
    assert b.labels == {"diagnosis": "normal"}  # blank and nan are missing
    assert "patient_id" not in a.labels and "view_position" not in a.labels


@pytest.mark.parametrize("column", ["filename", "file", "image", "path", "Image Index", "File_Name"])
def test_filename_column_is_detected(column):
    data = f"{column},Patient ID,label\nx/y.png,7,1\n".encode()
    rows, _ = parse_label_table(data, "generic")
    assert rows[0].key == "x/y.png" and rows[0].patient_id == "7" and rows[0].labels == {"label": 1.0}


def test_explicit_filename_column():
    data = b"case,reader,rating\nq1.png,r1,4\n"
    rows, _ = parse_label_table(data, "generic", filename_column="case")
    assert rows[0].key == "q1.png" and rows[0].labels == {"reader": "r1", "rating": 4.0}
    with pytest.raises(LabelTableError, match="'image_file'.*columns found: case, reader, rating"):
        parse_label_table(data, "generic", filename_column="image_file")


def test_several_rows_per_file_are_all_returned():
    data = b"filename,reader,rating\nq.png,r1,4\nq.png,r2,5\nq.png,r3,\n"
    rows, problems = parse_label_table(data, "generic")
    assert problems == []
    assert [r.labels.get("rating") for r in rows] == [4.0, 5.0, None]
    assert [r.line for r in rows] == [2, 3, 4]


def test_semicolon_table_with_decimal_commas_and_latin1():
    data = "filename;Befund;Wert\nä.png;Erguss;0,25\n".encode("latin-1")
    rows, problems = parse_label_table(data, "generic")
    assert problems == []
    assert rows[0].key == "ä.png" and rows[0].labels == {"Befund": "Erguss", "Wert": 0.25}


def test_tab_separated_utf8_with_bom():
    data = "\ufefffilename\tlabel\na.png\t1\n".encode("utf-8")
    rows, _ = parse_label_table(data, "generic")
    assert rows[0].key == "a.png" and rows[0].labels == {"label": 1.0}


def test_empty_key_and_wrong_width_are_row_problems():
    data = b"filename,label\n,1\na.png,1,2\nb.png,0\n\n"
    rows, problems = parse_label_table(data, "generic")
    assert [r.key for r in rows] == ["b.png"]
    assert problems == [(2, "empty file name"), (3, "expected 2 columns, found 3")]


def test_missing_filename_column_lists_what_was_found():
    expected = r"'filename' \(or file, image, path, Image Index\) not found; columns found: name, label"
    with pytest.raises(LabelTableError, match=expected):
        parse_label_table(b"name,label\na.png,1\n", "generic")
