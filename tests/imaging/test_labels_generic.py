"""Generic tables: a file name column plus anything; several rows per file allowed."""

import pytest

from retrieval.imports.ingest import LABEL_TABLE
from retrieval.imports.labels import LabelTableError, parse_label_table


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


def test_patient_identifier_columns_are_dropped_with_a_report_line():
    data = (
        b"filename,PatientName,patient_id,Date of Birth,MRN,Accession #,Referring Physician,Institution,"
        b"patient address,phone,weight,sex,finding\n"
        b"a.png,Doe^Jane,P1,1950-01-02,12345,ACC9,Dr Who,St Elsewhere,1 Main St,555-0100,71.5,F,effusion\n"
    )
    rows, problems = parse_label_table(data, "generic")
    (row,) = rows
    # Patient characteristics and findings stay labels; the patient id is handed on for pseudonymisation.
    assert row.labels == {"weight": 71.5, "sex": "F", "finding": "effusion"}
    assert row.patient_id == "P1"
    dropped = [
        "PatientName",
        "Date of Birth",
        "MRN",
        "Accession #",
        "Referring Physician",
        "Institution",
        "patient address",
        "phone",
    ]
    assert problems == sorted(
        (1, f"column {c!r} looks like a patient identifier and was not imported") for c in dropped
    )
    assert not any(v in str(row.labels) for v in ("Doe", "1950", "12345", "ACC9", "Elsewhere", "Main St", "555"))


@pytest.mark.parametrize(
    "column",
    [
        "name",
        "Patient's Name",
        "DOB",
        "birth_date",
        "PatientBirthDate",
        "Medical Record Number",
        "AccessionNumber",
        "e-mail",
        "InstitutionName",
        "ReferringPhysicianName",
        "zip code",
        "OtherPatientIDs",
    ],
)
def test_identifier_spellings_are_recognised(column):
    data = f"filename,{column},score\na.png,secret,2\n".encode()
    rows, problems = parse_label_table(data, "generic")
    assert rows[0].labels == {"score": 2.0}
    assert problems == [(1, f"column {column!r} looks like a patient identifier and was not imported")]


def test_ordinary_columns_and_rater_columns_are_not_mistaken_for_identifiers():
    data = b"filename,rater,diagnosis,patient_age,study,view_position,surname_score\nq.png,r1,normal,54,s1,PA,3\n"
    rows, problems = parse_label_table(data, "generic")
    assert problems == []
    assert rows[0].labels == {
        "rater": "r1",
        "diagnosis": "normal",
        "patient_age": 54.0,
        "study": "s1",
        "surname_score": 3.0,
    }


def test_identifier_line_names_the_header_line_when_blank_lines_precede_it():
    rows, problems = parse_label_table(b"\n\nfilename,dob,x\na.png,1970,1\n", "generic")
    assert rows[0].labels == {"x": 1.0}
    assert problems == [(3, "column 'dob' looks like a patient identifier and was not imported")]


@pytest.mark.django_db
def test_import_stores_no_identifier_and_reports_the_dropped_columns(tmp_path):
    from retrieval.models import Image, Label
    from tests.factories import png_bytes, write_files
    from tests.importing import report_for, run_import

    src = write_files(tmp_path / "s", {"a.png": png_bytes(1), "b.png": png_bytes(2)})
    table = tmp_path / "labels.csv"
    table.write_bytes(
        b"filename,patient_name,patient_id,birth_date,weight\n"
        b"a.png,Doe^Jane,P1,1950-01-02,70\nb.png,Roe^Rick,P2,1960-03-04,80\n"
    )
    job = run_import(source=src, labels=str(table))
    assert job.status == "succeeded" and job.n_imported == 2
    lines = [(r["line"], r["message"]) for r in report_for(job, LABEL_TABLE)]
    assert (1, "column 'patient_name' looks like a patient identifier and was not imported") in lines
    assert (1, "column 'birth_date' looks like a patient identifier and was not imported") in lines
    assert set(Label.objects.values_list("name", flat=True)) == {"weight"}
    stored = " ".join(str(v) for v in Label.objects.values_list("value_text", flat=True))
    pseudonyms = set(Image.objects.values_list("patient_pseudo_id", flat=True))
    assert "Doe" not in stored and "1950" not in stored
    assert len(pseudonyms) == 2 and not pseudonyms & {"P1", "P2", ""}
