"""Seeded per-reader order: reproducible, distinct between readers; progress and next case."""

from __future__ import annotations

import re

from annotations import selectors, services
from readerstudy.models import Assignment
from tests.reading.factories import study_make


def test_case_order_is_reproducible_from_the_seed(reader, other_reader):
    study = study_make(readers=[reader], n_cases=12)
    a = Assignment.objects.get(study=study)
    again = Assignment(study=study, reader=other_reader, seed=a.seed)
    ids = list(study.cases.values_list("pk", flat=True))
    assert a.case_order(ids) == again.case_order(list(reversed(ids)))
    assert selectors.reader_order(assignment=a).case_ids == tuple(a.case_order(ids))
    assert sorted(a.case_order(ids)) == sorted(ids)


def test_different_seeds_give_different_orders(reader, other_reader):
    study = study_make(readers=[reader, other_reader], n_cases=12, n_candidates=8)
    a, b = Assignment.objects.filter(study=study)
    ids = list(study.cases.values_list("pk", flat=True))
    assert a.case_order(ids) != b.case_order(ids)
    case = study.cases.first()
    assert [c.key for c in selectors.reader_candidates(assignment=a, case=case)] != [
        c.key for c in selectors.reader_candidates(assignment=b, case=case)
    ]


def test_candidate_positions_are_reproducible(assignment, case):
    first = [(c.pk, c.shown_position) for c in selectors.reader_candidates(assignment=assignment, case=case)]
    again = [(c.pk, c.shown_position) for c in selectors.reader_candidates(assignment=assignment, case=case)]
    assert first == again
    assert [p for _, p in first] == list(range(1, 6))
    ids = [pk for pk, _ in first]
    assert ids == assignment.candidate_order(case.pk, ids)


def test_candidate_keys_are_opaque_and_per_reader(assignment, other_assignment, case):
    mine = selectors.candidate_keymap(assignment=assignment, case=case)
    theirs = selectors.candidate_keymap(assignment=other_assignment, case=case)
    assert sorted(mine.values()) == sorted(theirs.values())
    assert not set(mine) & set(theirs)
    assert all(re.fullmatch(r"[0-9a-f]{16}", key) and key != str(cid) for key, cid in mine.items())


def test_next_case_follows_order_and_answers(assignment, study):
    order = selectors.reader_order(assignment=assignment)
    assert next_case(assignment) == order.case_ids[0]
    assert order.can_open(1) and not order.can_open(2) and not order.can_open(0) and not order.can_open(4)
    for i, cid in enumerate(order.case_ids):
        case = study.cases.get(pk=cid)
        services.answer_submit(
            assignment=assignment,
            case=case,
            client_token=f"token-{i:04d}",
            payload={"selected": list(case.candidates.values_list("pk", flat=True)[:2])},
        )
        progressed = selectors.reader_order(assignment=assignment)
        assert progressed.done == i + 1
        assert progressed.can_open(i + 1)
    assert next_case(assignment) is None
    assert selectors.reader_order(assignment=assignment).next_index is None


def next_case(assignment):
    case = selectors.next_case_for(assignment)
    return case.pk if case else None


def test_study_list_progress(reader, assignment, study, case):
    services.answer_submit(
        assignment=assignment,
        case=case,
        client_token="token-list",
        payload={"selected": list(case.candidates.values_list("pk", flat=True)[:2])},
    )
    rows = selectors.reader_study_list(user=reader)
    assert [(r.study_id, r.n_cases, r.n_done) for r in rows] == [(study.pk, 3, 1)]
