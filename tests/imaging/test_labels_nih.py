"""ChestX-ray14 Data_Entry_2017.csv: pipe-separated findings, odd headers, trailing comma."""

import pytest

from retrieval.imports.labels import NIH_FINDINGS, NIH_LABELS, LabelTableError, parse_label_table

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
)


def table(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


def test_findings_become_one_hot_labels_with_odd_headers_and_trailing_comma():
    rows, problems = parse_label_table(
        table(
            "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,",
            "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,",
            "00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171,",
        ),
        "nih",
    )
    assert problems == []
    assert [r.key for r in rows] == ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    first, second, third = rows
    assert set(first.labels) == set(NIH_LABELS) | {"Patient Age", "Patient Gender"}
    assert first.labels["Cardiomegaly"] == 1.0 and first.labels["Effusion"] == 0.0
    assert second.labels["Emphysema"] == 1.0 and second.labels["No Finding"] == 0.0
    assert third.labels["No Finding"] == 1.0
    assert all(third.labels[name] == 0.0 for name in NIH_FINDINGS)
    assert (first.patient_id, first.view_position, first.line) == ("1", "PA", 2)
    assert first.labels["Patient Age"] == 58.0 and first.labels["Patient Gender"] == "M"


def test_rows_without_the_trailing_comma_are_fine_too():
    rows, problems = parse_label_table(table("00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143"), "nih")
    assert problems == [] and rows[0].labels["Hernia"] == 1.0


def test_unknown_finding_is_a_problem_but_the_row_is_kept():
    rows, problems = parse_label_table(table("00000004_000.png,Effusion|Flu,0,4,40,F,PA,1,1,0.1,0.1,"), "nih")
    assert rows[0].labels["Effusion"] == 1.0
    assert problems == [(2, problems[0][1])] and "unknown finding 'Flu'" in problems[0][1]


def test_finding_spelling_variants_are_accepted():
    rows, problems = parse_label_table(table("a.png,pleural thickening|EFFUSION,0,4,40,F,PA,1,1,0.1,0.1,"), "nih")
    assert problems == []
    assert rows[0].labels["Pleural_Thickening"] == 1.0 and rows[0].labels["Effusion"] == 1.0


def test_row_problems_duplicates_width_age_and_empty_key():
    rows, problems = parse_label_table(
        table(
            "a.png,Mass,0,5,40Y,F,PA,1,1,0.1,0.1,",
            "a.png,Mass,0,5,40,F,PA,1,1,0.1,0.1,",
            "b.png,Mass,0,6,old,F,PA,1,1,0.1,0.1,",
            ",Mass,0,7,40,F,PA,1,1,0.1,0.1,",
            "c.png,Mass,0,8",
            "d.png,No Finding|Mass,0,9,40,F,PA,1,1,0.1,0.1,",
        ),
        "nih",
    )
    assert [r.key for r in rows] == ["a.png", "b.png", "d.png"]
    assert rows[0].labels["Patient Age"] == 40.0  # DICOM-style "040Y" ages are read too
    assert "Patient Age" not in rows[1].labels
    messages = dict(problems)
    assert "duplicate of line 2" in messages[3]
    assert "Patient Age 'old' is not a number" in messages[4]
    assert messages[5] == "empty file name"
    assert messages[6] == "expected 11 columns, found 4"
    assert "'No Finding' together with Mass" in messages[7]


def test_missing_required_column_is_named_with_the_columns_found():
    with pytest.raises(LabelTableError, match="'Finding Labels'.*columns found: Image Index, Patient ID"):
        parse_label_table(b"Image Index,Patient ID\na.png,1\n", "nih")
