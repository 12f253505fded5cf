"""Per-image question answers (questions CSV) and flag comments (long CSV) leave the database intact.

The study is answered through the reading services, as readers do; the downloads are loaded in
pandas and compared with the stored ImageAnswer and CaseFlag rows.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from annotations import services
from annotations.models import CaseFlag, ImageAnswer
from readerstudy.models import Assignment, StudyStatus
from reports import exports
from reports.options import ReportOptions
from tests.conftest import client_for
from tests.reading.factories import study_make

QUESTIONS = [
    {"key": "effusion", "text": "Pleural effusion?", "choices": ["yes", "no", "unsure"], "applies_to": "all"},
    {"key": "quality", "text": "Diagnostic quality?", "choices": ["good", "poor"], "applies_to": "query"},
    {"key": "device", "text": "Device visible?", "choices": ["yes", "no"], "applies_to": "candidates"},
]
N_CASES, N_CANDIDATES = 3, 4
COMMENT = 'Label looks wrong: "effusion", not normal,\nsee the left base'


@pytest.fixture
def answered(reader, other_reader):
    """reader answers every case, other_reader all but the last; random answers to every question; flags."""
    study = study_make(
        readers=[reader, other_reader], n_cases=N_CASES, n_candidates=N_CANDIDATES, k=2, questions=QUESTIONS
    )
    rng = np.random.default_rng(3)
    cases = list(study.cases.order_by("position"))
    for user, n in ((reader, N_CASES), (other_reader, N_CASES - 1)):
        assignment = Assignment.objects.get(study=study, reader=user)
        for case in cases[:n]:
            ids = list(case.candidates.values_list("pk", flat=True))
            image_answers = [
                {"question": q["key"], "candidate": target, "value": str(rng.choice(q["choices"]))}
                for q in QUESTIONS
                for target in ([None] if q["applies_to"] != "candidates" else [])
                + (ids if q["applies_to"] != "query" else [])
            ]
            services.answer_submit(
                assignment=assignment,
                case=case,
                payload={"selected": ids[:2], "image_answers": image_answers},
                client_token=f"token-q-{user.pk}-{case.pk}",
            )
    services.flag_set(assignment=Assignment.objects.get(study=study, reader=reader), case=cases[1], comment=COMMENT)
    services.flag_set(assignment=Assignment.objects.get(study=study, reader=other_reader), case=cases[0], comment="")
    study.status = StudyStatus.CLOSED
    study.save(update_fields=["status"])
    return study


def _download(client, study, fmt: str):
    response = client.get(f"/reports/studies/{study.pk}/download/{fmt}/")
    assert response.status_code == 200, response.content[:300]
    return response


def test_questions_csv_loads_in_pandas_and_holds_every_stored_answer(client, researcher, answered):
    response = _download(client_for(client, researcher), answered, "questions")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        f'attachment; filename="study-{answered.pk}-{answered.name.lower().replace(" ", "-")}-questions.csv"'
    )
    df = pd.read_csv(io.BytesIO(response.content))
    assert list(df.columns) == exports.QUESTION_COLUMNS
    # every reader × case × (query: effusion, quality; each candidate: effusion, device)
    assert len(df) == 2 * N_CASES * (2 + 2 * N_CANDIDATES)
    stored = {
        (a.answer.assignment.reader.username, a.answer.case_id, a.image_id, a.question.key, a.value)
        for a in ImageAnswer.objects.select_related("answer__assignment__reader", "question")
    }
    assert len(stored) == (2 * N_CASES - 1) * (2 + 2 * N_CANDIDATES)
    given = df[df.value.notna()]
    assert set(zip(given.reader, given.case_id, given.image_id, given.question, given.value)) == stored
    missing = df[df.value.isna()]
    assert (missing.answered == 0).all() and missing.reader.unique().tolist() == ["other_reader"]
    assert len(missing) == 2 + 2 * N_CANDIDATES
    assert set(df[df.image == "query"].question) == {"effusion", "quality"}
    assert set(df[df.image == "candidate"].question) == {"effusion", "device"}
    assert (df[df.image == "query"].image_id == df[df.image == "query"].query_image_id).all()


def test_questions_csv_joins_the_long_csv_on_reader_case_and_candidate(client, researcher, answered):
    c = client_for(client, researcher)
    questions = pd.read_csv(io.BytesIO(_download(c, answered, "questions").content))
    long = pd.read_csv(io.BytesIO(_download(c, answered, "csv").content))
    cands = questions[questions.image == "candidate"].astype({"candidate_id": int, "candidate_position": int})
    merged = cands.merge(long, on=["reader", "case_id", "candidate_id"], suffixes=("", "_long"))
    assert len(merged) == len(cands)
    assert (merged.image_id == merged.candidate_image_id).all()
    assert (merged.candidate_position == merged.candidate_position_long).all()
    assert (merged.shown_position.fillna(0) == merged.shown_position_long.fillna(0)).all()
    # a labelled wide table per image, as a researcher would pivot it
    wide = questions.pivot_table(
        index=["reader", "case_id", "image_id"], columns="question", values="value", aggfunc="first"
    )
    assert set(wide.columns) == {"effusion", "quality", "device"}


def test_long_csv_carries_the_flag_comments(client, researcher, reader, other_reader, answered):
    df = pd.read_csv(io.BytesIO(_download(client_for(client, researcher), answered, "csv").content))
    assert "flag_comment" in df.columns
    flags = {
        (f.assignment.reader.username, f.case_id): f.comment
        for f in CaseFlag.objects.select_related("assignment__reader")
    }
    assert flags[("reader", answered.cases.get(position=1).pk)] == COMMENT
    per_case = df.groupby(["reader", "case_id"]).agg(
        flagged=("flagged", "max"), n=("flag_comment", "nunique"), comment=("flag_comment", "first")
    )
    for (name, case_id), row in per_case.iterrows():
        assert row.flagged == int((name, case_id) in flags)
        expected = flags.get((name, case_id), "")
        assert (row.comment if isinstance(row.comment, str) else "") == expected
        assert row.n == (1 if expected else 0)  # the same comment on each of the case's candidate rows


def test_command_writes_the_same_questions_csv(client, researcher, answered, tmp_path):
    call_command("agreement_report", str(answered.pk), "--format", "questions", "--out", str(tmp_path))
    written = next(tmp_path.glob("*-questions.csv")).read_bytes()
    assert written == _download(client_for(client, researcher), answered, "questions").content
    body, _, _ = exports.export_file(study=answered, options=ReportOptions(), fmt="questions")
    assert body == written


def test_report_page_offers_the_questions_download(client, researcher, answered):
    html = client_for(client, researcher).get(f"/reports/studies/{answered.pk}/").content.decode()
    assert f"/reports/studies/{answered.pk}/download/questions/" in html


def test_study_without_questions_gives_a_header_only(generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    body, _, name = exports.export_file(study=g.study, options=ReportOptions(), fmt="questions")
    assert body.decode() == ",".join(exports.QUESTION_COLUMNS) + "\n" and name.endswith("-questions.csv")
    assert pd.read_csv(io.BytesIO(body)).empty
