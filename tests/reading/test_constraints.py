"""The database itself refuses what the services never write: each constraint of annotations.models, proven.

Rows are written with the ORM, around the services, as a bug or a concurrent request could. Each
refusal runs in its own atomic block, so the test goes on after the IntegrityError. The error
must come from the intended constraint: its name (PostgreSQL, SQLite CHECK) or its columns
(SQLite UNIQUE).
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.models import Answer, AnswerItem, CaseFlag, CaseVisit, ImageAnswer
from readerstudy.models import AnswerMode, Assignment, StudyQuestion
from tests.reading.factories import study_make

pytestmark = pytest.mark.db_engine(
    "each engine enforces the CHECK and UNIQUE constraints itself and names the violated one in its own words"
)


def _refused(make, constraint: str, columns: str):
    with pytest.raises(IntegrityError, match=rf"{constraint}|{columns}"), transaction.atomic():
        make()


@pytest.fixture
def ranked(reader):
    """Open rank-all study, one case of 4 candidates, reader's empty answer to it."""
    study = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=4, k=None)
    assignment = Assignment.objects.get(study=study, reader=reader)
    case = study.cases.get()
    answer = Answer.objects.create(assignment=assignment, case=case, submitted_at=timezone.now())
    return assignment, case, answer, list(case.candidates.order_by("position"))


def test_one_answer_per_reader_and_case(ranked):
    assignment, case, _, _ = ranked
    _refused(
        lambda: Answer.objects.create(assignment=assignment, case=case, submitted_at=timezone.now()),
        "answer_one_per_reader_case",
        r"annotations_answer\.assignment_id, annotations_answer\.case_id",
    )
    assert Answer.objects.filter(assignment=assignment, case=case).count() == 1


def test_one_item_per_candidate(ranked):
    _, _, answer, cands = ranked
    AnswerItem.objects.create(answer=answer, candidate=cands[0], rank=1)
    _refused(
        lambda: AnswerItem.objects.create(answer=answer, candidate=cands[0], rank=2),
        "item_unique_candidate",
        r"annotations_answeritem\.answer_id, annotations_answeritem\.candidate_id",
    )
    assert answer.items.count() == 1


@pytest.mark.parametrize("rank", [0, -1])
def test_ranks_start_at_one(ranked, rank):
    _, _, answer, cands = ranked
    _refused(
        lambda: AnswerItem.objects.create(answer=answer, candidate=cands[0], rank=rank), "item_rank_positive", r"rank"
    )
    AnswerItem.objects.create(answer=answer, candidate=cands[0], rank=1)  # the lowest allowed


def test_a_rank_is_used_once_per_answer(ranked, reader):
    assignment, case, answer, cands = ranked
    AnswerItem.objects.create(answer=answer, candidate=cands[0], rank=1)
    _refused(
        lambda: AnswerItem.objects.create(answer=answer, candidate=cands[1], rank=1),
        "item_unique_rank",
        r"annotations_answeritem\.answer_id, annotations_answeritem\.rank",
    )
    # the same rank in another reader's answer, and unranked (choose-k) items, are fine
    other = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=2, k=None)
    other_answer = Answer.objects.create(
        assignment=Assignment.objects.get(study=other, reader=reader),
        case=other.cases.get(),
        submitted_at=timezone.now(),
    )
    AnswerItem.objects.create(answer=other_answer, candidate=other.cases.get().candidates.first(), rank=1)
    AnswerItem.objects.create(answer=answer, candidate=cands[2], selected=True)
    AnswerItem.objects.create(answer=answer, candidate=cands[3], selected=False)
    assert answer.items.filter(rank__isnull=True).count() == 2


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no answer at all
        {"selected": True, "rank": 1},  # two at once
        {"rank": 2, "rating": 3},
        {"selected": False, "rating": 1},
        {"selected": True, "rank": 1, "rating": 1},
    ],
)
def test_an_item_holds_exactly_one_of_selected_rank_rating(ranked, fields):
    _, _, answer, cands = ranked
    _refused(
        lambda: AnswerItem.objects.create(answer=answer, candidate=cands[0], **fields),
        "item_one_value",
        "item_one_value",
    )
    for i, ok in enumerate([{"selected": False}, {"rank": 1}, {"rating": 3}]):
        AnswerItem.objects.create(answer=answer, candidate=cands[i], **ok)


def test_one_flag_per_reader_and_case(ranked, other_reader):
    assignment, case, _, _ = ranked
    CaseFlag.objects.create(assignment=assignment, case=case, comment="first")
    _refused(
        lambda: CaseFlag.objects.create(assignment=assignment, case=case, comment="second"),
        "flag_unique_per_case",
        r"annotations_caseflag\.assignment_id, annotations_caseflag\.case_id",
    )
    theirs = Assignment.objects.create(study=case.study, reader=other_reader, seed=5)
    CaseFlag.objects.create(assignment=theirs, case=case, comment="another reader's")  # fine
    assert list(CaseFlag.objects.filter(case=case).order_by("pk").values_list("comment", flat=True)) == [
        "first",
        "another reader's",
    ]


def test_one_visit_per_reader_and_case(ranked):
    assignment, case, _, _ = ranked
    now = timezone.now()
    CaseVisit.objects.create(assignment=assignment, case=case, opened_at=now, last_seen_at=now)
    _refused(
        lambda: CaseVisit.objects.create(assignment=assignment, case=case, opened_at=now, last_seen_at=now),
        "visit_unique_per_case",
        r"annotations_casevisit\.assignment_id, annotations_casevisit\.case_id",
    )
    assert CaseVisit.objects.filter(assignment=assignment, case=case).count() == 1


def test_one_answer_per_question_and_image(ranked):
    _, case, answer, _ = ranked
    question = StudyQuestion.objects.create(study=case.study, key="effusion", text="Effusion?", choices=["yes", "no"])
    ImageAnswer.objects.create(answer=answer, question=question, image=case.query, value="yes")
    _refused(
        lambda: ImageAnswer.objects.create(answer=answer, question=question, image=case.query, value="no"),
        "image_answer_unique",
        r"annotations_imageanswer\.answer_id, annotations_imageanswer\.question_id",
    )
