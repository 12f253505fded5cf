"""Identifier columns are recognised by the tokens of their names and by their values, free text is
refused unless allowed, and the column plan is what the import applies (issue 12, finding 5)."""

import pytest

from retrieval.imports.labels import (
    column_tokens,
    free_text_reason,
    identifier_reason,
    label_table_columns,
    parse_label_table,
)

#: The audit's columns that became labels on main.
AUDIT_IDENTIFIERS = ["patient_mrn", "patient_dob", "pt_name", "forename", "nhs_no", "national_id", "birth_place"]


def identifier_line(column: str) -> tuple[int, str]:
    return (1, f"column {column!r} looks like a patient identifier and was not imported")


@pytest.mark.parametrize(
    ("column", "tokens"),
    [
        ("patientMRN", ["patient", "mrn"]),
        ("PatientBirthDate", ["patient", "birth", "date"]),
        ("NHS_no", ["nhs", "no"]),
        ("Patient's Name", ["patient", "s", "name"]),
        ("e-mail address2", ["e", "mail", "address", "2"]),
        ("MRNNumber", ["mrn", "number"]),
    ],
)
def test_column_tokens(column, tokens):
    assert column_tokens(column) == tokens


@pytest.mark.parametrize(
    "column",
    AUDIT_IDENTIFIERS
    + [
        "Surname",
        "first-name",
        "givenName",
        "Date of Birth",
        "ssn",
        "SocialSecurityNo",
        "home address",
        "Post code",
        "zip",
        "mobile phone",
        "E-Mail",
        "contactEmail",
        "hospital_number",
        "medical record no",
        "Accession",
        "referring doctor",
        "exam_date",
        "ptdob",
        "patientmrn",
        "Name",
    ],
)
def test_identifier_tokens_inside_column_names(column):
    assert identifier_reason(column), column
    data = f"filename,{column},finding\na.png,secret,effusion\n".encode()
    rows, problems = parse_label_table(data, "generic")
    assert rows[0].labels == {"finding": "effusion"}
    assert problems == [identifier_line(column)]


@pytest.mark.parametrize(
    "column",
    [
        "finding",
        "diagnosis",
        "image_name",  # names a thing, not a person (the file-name key column is another)
        "study_name",
        "series_name",
        "patient_age",
        "PatientSex",
        "weight",
        "view",
        "rater",
        "reader",
        "ctr",
        "surname_score",  # a measure about a name: judged by its values
        "Pleural Effusion",
        "birads",
        "modality",
    ],
)
def test_ordinary_columns_are_labels(column):
    assert identifier_reason(column) is None, column
    data = f"filename,{column}\na.png,1\n".encode()
    rows, problems = parse_label_table(data, "generic")
    assert rows[0].labels == {column: 1.0} and problems == []


def test_values_that_are_dates_or_emails_make_an_identifier_column():
    data = (
        b"filename,when,who,grade\n"
        b"a.png,2021-03-04,jane@example.org,2\nb.png,05/06/2020,rick@example.org,3\nc.png,,,1\n"
    )
    rows, problems = parse_label_table(data, "generic")
    assert [r.labels for r in rows] == [{"grade": 2.0}, {"grade": 3.0}, {"grade": 1.0}]
    assert problems == [identifier_line("when"), identifier_line("who")]


def free_text_table(n: int = 12) -> bytes:
    lines = ["filename,notes,remark_code,finding,history_flag"]
    for i in range(n):
        finding = ("effusion", "normal", "nodule")[i % 3]
        lines.append(f"img{i}.png,seen by Dr X on ward {i},c{i},{finding},{i % 2}")
    return "\n".join(lines).encode()


def test_free_text_is_refused_unless_allowed():
    rows, problems = parse_label_table(free_text_table(), "generic")
    assert rows[0].labels == {"finding": "effusion", "history_flag": 0.0}
    messages = [m for _, m in problems]
    assert any(m.startswith("column 'notes' looks like free text (its name has 'notes')") for m in messages)
    # A code that differs on every row classifies nothing: refused as well.
    assert any(m.startswith("column 'remark_code' looks like free text") for m in messages)
    assert any("allow free-text columns to import it" in m for m in messages)

    rows, problems = parse_label_table(free_text_table(), "generic", allow_free_text=True)
    assert rows[0].labels == {
        "notes": "seen by Dr X on ward 0",
        "remark_code": "c0",
        "finding": "effusion",
        "history_flag": 0.0,
    }
    assert problems == []


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        (["effusion", "normal", "nodule", "effusion"], False),
        (["normal"] * 20, False),
        (["1", "2", "3"] * 5, False),
        (["a" * 81], True),  # long
        (["the patient fell at home on monday"], True),  # wordy
        ([f"case {i}" for i in range(12)], True),  # different on every row
        ([f"case {i}" for i in range(9)], False),  # too few rows to tell
    ],
)
def test_free_text_by_value(values, refused):
    assert bool(free_text_reason("value", values)) is refused


def test_a_free_text_name_over_numbers_is_a_label():
    rows, problems = parse_label_table(b"filename,notes,history_flag\na.png,3,1\n", "generic")
    assert rows[0].labels == {"notes": 3.0, "history_flag": 1.0} and problems == []


def test_identifiers_stay_dropped_when_free_text_is_allowed():
    rows, problems = parse_label_table(
        b"filename,pt_name,notes\na.png,Doe^Jane,fine\n", "generic", allow_free_text=True
    )
    assert rows[0].labels == {"notes": "fine"}
    assert problems == [identifier_line("pt_name")]


def test_column_plan_with_samples_of_kept_columns_only():
    data = (
        b"filename,patient_id,view_position,patient_mrn,notes,finding,weight\n"
        b"a.png,P1,PA,12345,called family,effusion,70\n"
        b"b.png,P2,AP,67890,,normal,81.5\n"
        b"c.png,P3,PA,13579,,effusion,60\n"
    )
    preview = label_table_columns(data, "generic")
    plan = {c.name: (c.action, c.samples) for c in preview.columns}
    assert plan == {
        "filename": ("key", []),
        "patient_id": ("patient", []),
        "view_position": ("view", ["PA", "AP"]),
        "patient_mrn": ("identifier", []),
        "notes": ("free_text", []),
        "finding": ("label", ["effusion", "normal"]),
        "weight": ("label", ["70", "81.5", "60"]),
    }
    assert preview.rows == 3
    assert label_table_columns(data, "generic", allow_free_text=True).columns[4].action == "label"
    # The preview and the import agree.
    rows, problems = parse_label_table(data, "generic")
    assert set(rows[0].labels) == {name for name, (action, _) in plan.items() if action == "label"}
    assert [m for _, m in problems] == [m for _, m in preview.problems]


def test_column_plan_of_the_fixed_formats():
    nih = (
        b"Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
        b"a.png,Effusion,0,7,58,F,PA\n"
    )
    plan = {c.name: c.action for c in label_table_columns(nih, "nih").columns}
    assert plan == {
        "Image Index": "key",
        "Finding Labels": "label",
        "Follow-up #": "ignored",
        "Patient ID": "patient",
        "Patient Age": "label",
        "Patient Gender": "label",
        "View Position": "view",
    }
    chexpert = b"Path,Sex,Age,Frontal/Lateral,AP/PA,Edema,Notes\np/a.jpg,Male,50,Frontal,AP,1,hello\n"
    plan = {c.name: c.action for c in label_table_columns(chexpert, "chexpert").columns}
    assert plan["Notes"] == "ignored" and plan["Edema"] == "label" and plan["AP/PA"] == "view"
