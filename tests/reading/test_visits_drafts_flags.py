"""case_open, bounded heartbeats, draft validation, flags."""

from __future__ import annotations

from datetime import timedelta

import pytest

from annotations import services
from annotations.models import CaseFlag, CaseVisit
from core.errors import ApplicationError, Conflict
from readerstudy.models import AnswerMode, Assignment
from tests.reading.factories import study_make


def _ids(case):
    return list(case.candidates.order_by("pk").values_list("pk", flat=True))


def _age(visit, seconds):
    """Pretend the last beat was `seconds` ago."""
    CaseVisit.objects.filter(pk=visit.pk).update(last_seen_at=visit.last_seen_at - timedelta(seconds=seconds))


def test_case_open_sets_opened_at_once(assignment, case):
    first = services.case_open(assignment=assignment, case=case)
    CaseVisit.objects.filter(pk=first.pk).update(opened_at=first.opened_at - timedelta(hours=1))
    again = services.case_open(assignment=assignment, case=case)
    assert CaseVisit.objects.count() == 1
    assert again.opened_at == first.opened_at - timedelta(hours=1)
    assert again.last_seen_at >= first.last_seen_at


def test_heartbeat_adds_active_time(assignment, case):
    visit = services.case_open(assignment=assignment, case=case)
    _age(visit, 20)
    visit = services.visit_heartbeat(assignment=assignment, case=case, active_ms_delta=15_000)
    assert visit.active_ms == 15_000


def test_heartbeat_is_bounded_per_beat(assignment, case):
    visit = services.case_open(assignment=assignment, case=case)
    _age(visit, 3600)
    visit = services.visit_heartbeat(assignment=assignment, case=case, active_ms_delta=10**9)
    assert visit.active_ms == services.MAX_BEAT_MS


def test_forged_rapid_heartbeats_cannot_exceed_wall_time(assignment, case):
    visit = services.case_open(assignment=assignment, case=case)
    for _ in range(20):
        services.visit_heartbeat(assignment=assignment, case=case, active_ms_delta=60_000)
    visit.refresh_from_db()
    wall_ms = (visit.last_seen_at - visit.opened_at) / timedelta(milliseconds=1)
    assert visit.active_ms <= wall_ms + 1


@pytest.mark.parametrize("bad", [-1, "100", 1.5, None])
def test_heartbeat_refuses_bad_delta(assignment, case, bad):
    with pytest.raises(ApplicationError):
        services.visit_heartbeat(assignment=assignment, case=case, active_ms_delta=bad)


@pytest.mark.db_engine("a reader's draft is a JSON column written with select_for_update held (a no-op on SQLite)")
def test_draft_roundtrip_partial(assignment, case):
    ids = _ids(case)
    visit = services.draft_save(assignment=assignment, case=case, draft={"selected": [ids[2]]})
    assert visit.draft == {"selected": [ids[2]]}
    assert CaseVisit.objects.get().opened_at is not None


@pytest.mark.parametrize(
    "draft,message",
    [
        ({"selected": "x"}, "list"),
        ({"selected": [1, 1]}, "twice"),
        ({"unknown": []}, "Unknown draft field"),
        ({"selected": [0]}, "not a candidate"),
        ([], "object"),
    ],
)
def test_draft_shape_is_validated(assignment, case, draft, message):
    with pytest.raises(ApplicationError, match=message):
        services.draft_save(assignment=assignment, case=case, draft=draft)
    assert not CaseVisit.objects.exists()


def test_draft_choose_k_cannot_exceed_k(assignment, case):
    with pytest.raises(ApplicationError, match="at most 2"):
        services.draft_save(assignment=assignment, case=case, draft={"selected": _ids(case)[:3]})


def test_draft_may_be_incomplete_in_rate_and_rank_modes(reader):
    for mode in (AnswerMode.RATE, AnswerMode.RANK_ALL):
        study = study_make(mode=mode, readers=[reader], n_candidates=3)
        a, case = Assignment.objects.get(study=study, reader=reader), study.cases.first()
        ids = _ids(case)
        services.draft_save(assignment=a, case=case, draft={"ratings": {ids[0]: 4}, "ranking": [ids[1]]})
        assert CaseVisit.objects.get(assignment=a).draft == {"ratings": {str(ids[0]): 4}, "ranking": [ids[1]]}


def test_draft_rating_out_of_range_is_refused(reader):
    study = study_make(mode=AnswerMode.RATE, readers=[reader], n_candidates=3)
    a, case = Assignment.objects.get(study=study, reader=reader), study.cases.first()
    with pytest.raises(ApplicationError, match="rating"):
        services.draft_save(assignment=a, case=case, draft={"ratings": {_ids(case)[0]: 9}})


def test_flag_set_update_and_clear(assignment, case):
    services.flag_set(assignment=assignment, case=case, comment="  blurry  ")
    services.flag_set(assignment=assignment, case=case, comment="duplicate of case 2")
    assert list(CaseFlag.objects.values_list("comment", flat=True)) == ["duplicate of case 2"]
    services.flag_clear(assignment=assignment, case=case)
    services.flag_clear(assignment=assignment, case=case)
    assert not CaseFlag.objects.exists()


def test_flag_comment_length_is_bounded(assignment, case):
    with pytest.raises(ApplicationError, match="at most"):
        services.flag_set(assignment=assignment, case=case, comment="x" * (services.MAX_COMMENT_CHARS + 1))


def test_no_draft_for_an_answered_case_without_revisions(assignment, case):
    services.answer_submit(
        assignment=assignment, case=case, payload={"selected": _ids(case)[:2]}, client_token="token-drafted"
    )
    with pytest.raises(Conflict, match="already answered"):
        services.draft_save(assignment=assignment, case=case, draft={"selected": _ids(case)[:1]})
