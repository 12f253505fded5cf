"""answer_submit: validation per mode, image questions, idempotency, revisions, study state."""

from __future__ import annotations

import pytest

from annotations import services
from annotations.models import Answer, AnswerItem, AnswerRevision, ImageAnswer
from core.errors import ApplicationError, Conflict
from readerstudy.models import AnswerMode, Assignment, StudyStatus
from tests.reading.factories import answer_payload, study_make

TOKEN = "token-0001"


def _ids(case):
    return list(case.candidates.order_by("pk").values_list("pk", flat=True))


def _submit(assignment, case, payload, token=TOKEN):
    return services.answer_submit(assignment=assignment, case=case, payload=payload, client_token=token)


# --- choose k -------------------------------------------------------------------------------------


def test_choose_k_stores_one_item_per_candidate(assignment, case):
    ids = _ids(case)
    answer = _submit(assignment, case, {"selected": [ids[3], ids[1]]})
    items = {i.candidate_id: i for i in answer.items.all()}
    assert set(items) == set(ids)
    assert {c for c, i in items.items() if i.selected} == {ids[3], ids[1]}
    assert all(i.rank is None and i.rating is None for i in items.values())
    assert answer.revision == 1 and answer.client_token == TOKEN and answer.replayed is False


@pytest.mark.parametrize("pick", [[0], [0, 1, 2], []], ids=["too-few", "too-many", "none"])
def test_choose_k_needs_exactly_k(assignment, case, pick):
    ids = _ids(case)
    with pytest.raises(ApplicationError, match="exactly 2"):
        _submit(assignment, case, {"selected": [ids[i] for i in pick]})
    assert not Answer.objects.exists()


def test_choose_k_refuses_duplicates(assignment, case):
    ids = _ids(case)
    with pytest.raises(ApplicationError, match="twice"):
        _submit(assignment, case, {"selected": [ids[0], ids[0]]})


def test_choose_k_refuses_candidate_of_another_case(assignment, study, case):
    other_case = study.cases.exclude(pk=case.pk).first()
    with pytest.raises(ApplicationError, match="not a candidate of this case"):
        _submit(assignment, case, {"selected": [_ids(case)[0], _ids(other_case)[0]]})
    assert not AnswerItem.objects.exists()


@pytest.mark.parametrize("bad", [None, "1,2", [True, False], [1.5, 2.5], [{"id": 1}]])
def test_malformed_selection_is_refused(assignment, case, bad):
    with pytest.raises(ApplicationError):
        _submit(assignment, case, {"selected": bad})


def test_payload_must_be_an_object(assignment, case):
    with pytest.raises(ApplicationError, match="object"):
        _submit(assignment, case, ["not", "a", "dict"])


@pytest.mark.parametrize("token", ["", "short", "x" * 65, "has space!", None])
def test_client_token_is_required_and_checked(assignment, case, token):
    with pytest.raises(ApplicationError, match="client_token"):
        _submit(assignment, case, {"selected": _ids(case)[:2]}, token=token)


# --- rank all -------------------------------------------------------------------------------------


@pytest.fixture
def rank_study(reader):
    return study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_candidates=4)


def test_rank_all_stores_ranks(rank_study, reader):
    a, case = Assignment.objects.get(study=rank_study, reader=reader), rank_study.cases.first()
    ranking = list(reversed(_ids(case)))
    answer = _submit(a, case, {"ranking": ranking})
    assert [i.candidate_id for i in answer.items.order_by("rank")] == ranking
    assert sorted(answer.items.values_list("rank", flat=True)) == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", ["partial", "duplicate", "foreign"])
def test_rank_all_needs_full_permutation(rank_study, reader, bad):
    a, case = Assignment.objects.get(study=rank_study, reader=reader), rank_study.cases.first()
    ids = _ids(case)
    ranking = {
        "partial": ids[:3],
        "duplicate": ids[:3] + [ids[0]],
        "foreign": ids[:3] + [rank_study.cases.last().candidates.first().pk],
    }[bad]
    with pytest.raises(ApplicationError):
        _submit(a, case, {"ranking": ranking})
    assert not Answer.objects.exists()


@pytest.mark.parametrize("policy", ["allow", "warn", "refuse"])
def test_untouched_ranking_refused_only_when_the_study_says_so(rank_study, reader, policy):
    """The shown order itself is an answer under allow/warn (the page warns) and refused under refuse."""
    rank_study.untouched_ranking = policy
    rank_study.save()
    a, case = Assignment.objects.get(study=rank_study, reader=reader), rank_study.cases.first()
    shown = a.candidate_order(case.pk, _ids(case))
    if policy == "refuse":
        with pytest.raises(ApplicationError, match="still the order the candidates were shown in"):
            _submit(a, case, {"ranking": shown})
        assert not Answer.objects.exists()
        shown = [shown[1], shown[0], *shown[2:]]  # one swap is a ranking
    answer = _submit(a, case, {"ranking": shown})
    assert [i.candidate_id for i in answer.items.order_by("rank")] == shown


# --- rate -----------------------------------------------------------------------------------------


@pytest.fixture
def rate_study(reader):
    return study_make(mode=AnswerMode.RATE, readers=[reader], n_candidates=3, rating_min=1, rating_max=5)


def test_rate_stores_every_rating(rate_study, reader):
    a, case = Assignment.objects.get(study=rate_study, reader=reader), rate_study.cases.first()
    ids = _ids(case)
    answer = _submit(a, case, {"ratings": {str(ids[0]): 1, ids[1]: 5, ids[2]: 3}})
    assert dict(answer.items.values_list("candidate_id", "rating")) == {ids[0]: 1, ids[1]: 5, ids[2]: 3}


@pytest.mark.parametrize("bad", [{"0": 0}, {"0": 6}, {"0": 2.5}, {"0": "3"}, {"0": True}])
def test_rate_refuses_out_of_range(rate_study, reader, bad):
    a, case = Assignment.objects.get(study=rate_study, reader=reader), rate_study.cases.first()
    ids = _ids(case)
    ratings = {ids[1]: 3, ids[2]: 3, ids[0]: bad["0"]}
    with pytest.raises(ApplicationError, match="rating"):
        _submit(a, case, {"ratings": ratings})


def test_rate_needs_every_candidate(rate_study, reader):
    a, case = Assignment.objects.get(study=rate_study, reader=reader), rate_study.cases.first()
    with pytest.raises(ApplicationError, match="Rate every candidate"):
        _submit(a, case, {"ratings": {_ids(case)[0]: 3}})


# --- per-image questions --------------------------------------------------------------------------

EFFUSION = {"key": "effusion", "text": "Pleural effusion?", "choices": ["yes", "no"], "applies_to": "all"}


@pytest.fixture
def question_study(reader):
    return study_make(readers=[reader], n_candidates=3, questions=[EFFUSION])


def test_image_answers_stored_for_query_and_candidates(question_study, reader):
    a, case = Assignment.objects.get(study=question_study, reader=reader), question_study.cases.first()
    answer = _submit(a, case, answer_payload(question_study, case))
    images = set(ImageAnswer.objects.filter(answer=answer).values_list("image_id", flat=True))
    assert images == {case.query_id, *case.candidates.values_list("image_id", flat=True)}


def test_image_answers_are_required_for_every_image(question_study, reader):
    a, case = Assignment.objects.get(study=question_study, reader=reader), question_study.cases.first()
    payload = answer_payload(question_study, case)
    payload["image_answers"] = payload["image_answers"][1:]
    with pytest.raises(ApplicationError, match="1 unanswered"):
        _submit(a, case, payload)


@pytest.mark.parametrize(
    "change",
    [
        {"value": "maybe"},
        {"question": "nope"},
        {"candidate": 999999},
        {"candidate": "x"},
    ],
)
def test_image_answer_must_use_choices_and_images_of_the_case(question_study, reader, change):
    a, case = Assignment.objects.get(study=question_study, reader=reader), question_study.cases.first()
    payload = answer_payload(question_study, case)
    payload["image_answers"][0] = {**payload["image_answers"][0], **change}
    with pytest.raises(ApplicationError):
        _submit(a, case, payload)
    assert not Answer.objects.exists()


def test_image_answer_refuses_image_the_question_does_not_ask(reader):
    study = study_make(readers=[reader], n_candidates=2, questions=[{**EFFUSION, "applies_to": "query"}])
    a, case = Assignment.objects.get(study=study, reader=reader), study.cases.first()
    payload = answer_payload(study, case)
    payload["image_answers"].append({"question": "effusion", "candidate": _ids(case)[0], "value": "yes"})
    with pytest.raises(ApplicationError, match="not asked"):
        _submit(a, case, payload)


def test_image_answer_twice_for_same_image_is_refused(question_study, reader):
    a, case = Assignment.objects.get(study=question_study, reader=reader), question_study.cases.first()
    payload = answer_payload(question_study, case)
    payload["image_answers"].append(payload["image_answers"][0])
    with pytest.raises(ApplicationError, match="twice"):
        _submit(a, case, payload)


# --- idempotency and revisions --------------------------------------------------------------------


def test_same_token_is_a_no_op(assignment, case):
    ids = _ids(case)
    first = _submit(assignment, case, {"selected": ids[:2]})
    again = _submit(assignment, case, {"selected": ids[2:4]})
    assert again.pk == first.pk and again.replayed is True
    assert Answer.objects.count() == 1 and AnswerItem.objects.filter(selected=True).count() == 2
    assert set(AnswerItem.objects.filter(selected=True).values_list("candidate_id", flat=True)) == set(ids[:2])


def test_second_token_is_a_conflict_without_revisions(assignment, case):
    ids = _ids(case)
    _submit(assignment, case, {"selected": ids[:2]})
    with pytest.raises(Conflict, match="does not allow changes"):
        _submit(assignment, case, {"selected": ids[2:4]}, token="token-0002")
    assert set(AnswerItem.objects.filter(selected=True).values_list("candidate_id", flat=True)) == set(ids[:2])


def test_revision_keeps_history(reader):
    study = study_make(readers=[reader], allow_revisions=True, n_candidates=4)
    a, case = Assignment.objects.get(study=study, reader=reader), study.cases.first()
    ids = _ids(case)
    _submit(a, case, {"selected": ids[:2]}, token="token-rev1")
    answer = _submit(a, case, {"selected": ids[2:]}, token="token-rev2")
    assert answer.revision == 2 and answer.client_token == "token-rev2"
    assert set(answer.items.filter(selected=True).values_list("candidate_id", flat=True)) == set(ids[2:])
    old = AnswerRevision.objects.get(answer=answer)
    assert old.revision == 1 and old.payload["client_token"] == "token-rev1"
    assert set(old.payload["selected"]) == set(ids[:2])
    # A late retry of the first submission does not bring the old answer back.
    replay = _submit(a, case, {"selected": ids[:2]}, token="token-rev1")
    assert replay.replayed and replay.revision == 2
    assert Answer.objects.count() == 1 and AnswerRevision.objects.count() == 1


def test_shown_position_follows_reader_seed(assignment, case):
    ids = _ids(case)
    order = assignment.candidate_order(case.pk, ids)
    answer = _submit(assignment, case, {"selected": ids[:2]})
    assert {i.candidate_id: i.shown_position for i in answer.items.all()} == {c: p + 1 for p, c in enumerate(order)}


def test_answer_takes_active_time_and_clears_draft(assignment, case):
    visit = services.case_open(assignment=assignment, case=case)
    services.draft_save(assignment=assignment, case=case, draft={"selected": _ids(case)[:1]})
    type(visit).objects.filter(pk=visit.pk).update(active_ms=4321)
    answer = _submit(assignment, case, {"selected": _ids(case)[:2]})
    visit.refresh_from_db()
    assert answer.active_ms == 4321 and visit.draft == {}


# --- study state and ownership --------------------------------------------------------------------


@pytest.mark.parametrize("status", [StudyStatus.CLOSED, StudyStatus.DRAFT])
def test_only_open_studies_take_answers(assignment, case, study, status):
    study.status = status
    study.save()
    with pytest.raises(Conflict):
        _submit(assignment, case, {"selected": _ids(case)[:2]})
    with pytest.raises(Conflict):
        services.draft_save(assignment=assignment, case=case, draft={})
    with pytest.raises(Conflict):
        services.flag_set(assignment=assignment, case=case, comment="x")
    assert not Answer.objects.exists()


def test_case_of_another_study_is_refused(assignment, reader):
    foreign = study_make(readers=[reader]).cases.first()
    with pytest.raises(ApplicationError, match="not part of your study"):
        _submit(assignment, foreign, {"selected": _ids(foreign)[:2]})
