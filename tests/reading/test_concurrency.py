"""Many readers submitting at once (threads with their own connections) never lose or mix answers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from annotations import services
from annotations.models import Answer, AnswerItem
from core.errors import Conflict
from readerstudy.models import Assignment
from tests.reading.factories import assign, study_make

pytestmark = pytest.mark.db_engine(
    "threads with their own connections race: on PostgreSQL row locks (select_for_update) and unique constraints "
    "serialise them, on SQLite the lock on the whole database file does"
)

N_READERS = 8


def _run_threads(targets) -> list:
    """Run callables in threads at the same moment; return their results or exceptions."""
    barrier = threading.Barrier(len(targets))
    results: list = [None] * len(targets)

    def run(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - collected and checked by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_readers_never_lose_or_mix_answers(django_user_model):
    readers = [django_user_model.objects.create_user(f"r{i}", password="x") for i in range(N_READERS)]
    study = study_make(n_cases=2, n_candidates=6)
    assignments = [assign(study, r) for r in readers]
    cases = list(study.cases.order_by("position"))
    expected = {}
    jobs = []
    for i, a in enumerate(assignments):
        for case in cases:
            ids = list(case.candidates.order_by("pk").values_list("pk", flat=True))
            chosen = [ids[i % 6], ids[(i + 1 + case.position) % 6]]
            expected[(a.pk, case.pk)] = set(chosen)
            jobs.append(
                lambda a=a, case=case, chosen=chosen: services.answer_submit(
                    assignment=a, case=case, payload={"selected": chosen}, client_token=f"token-{a.pk}-{case.pk}"
                )
            )
    results = _run_threads(jobs)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Answer.objects.count() == len(expected)
    for (apk, cpk), chosen in expected.items():
        answer = Answer.objects.get(assignment_id=apk, case_id=cpk)
        assert set(answer.items.filter(selected=True).values_list("candidate_id", flat=True)) == chosen
        assert answer.items.count() == 6


@pytest.mark.django_db(transaction=True)
def test_same_reader_racing_submissions_store_exactly_one(django_user_model):
    reader = django_user_model.objects.create_user("racer", password="x")
    study = study_make(n_cases=1, n_candidates=6, readers=[reader])
    a, case = Assignment.objects.get(study=study), study.cases.get()
    ids = list(case.candidates.order_by("pk").values_list("pk", flat=True))
    # Six requests: three retries of one token and three different tokens (two windows open).
    jobs = [
        lambda t=t, pick=pick: services.answer_submit(
            assignment=a, case=case, payload={"selected": pick}, client_token=t
        )
        for t, pick in [("tok-same", ids[:2])] * 3 + [(f"tok-other-{i}", ids[2 + i : 4 + i]) for i in range(3)]
    ]
    results = _run_threads(jobs)
    answers = [r for r in results if isinstance(r, Answer)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert Answer.objects.count() == 1 and AnswerItem.objects.count() == 6
    stored = Answer.objects.get()
    assert all(r.pk == stored.pk for r in answers)
    # Whoever won, every success reports the stored token's answer and the items match it.
    winner_pick = {"tok-same": ids[:2], **{f"tok-other-{i}": ids[2 + i : 4 + i] for i in range(3)}}[stored.client_token]
    assert set(stored.items.filter(selected=True).values_list("candidate_id", flat=True)) == set(winner_pick)
    if stored.client_token == "tok-same":
        assert len(answers) == 3 and len(errors) == 3
    else:
        assert len(answers) == 1 and len(errors) == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_revisions_serialise(django_user_model):
    """With revisions allowed, racing changes all apply, one after the other (row lock)."""
    reader = django_user_model.objects.create_user("reviser", password="x")
    study = study_make(n_cases=1, n_candidates=6, readers=[reader], allow_revisions=True)
    a, case = Assignment.objects.get(study=study), study.cases.get()
    ids = list(case.candidates.order_by("pk").values_list("pk", flat=True))
    picks = {f"token-rev-{i}": [ids[i], ids[(i + 1) % 6]] for i in range(5)}
    results = _run_threads(
        [
            lambda t=t, p=p: services.answer_submit(assignment=a, case=case, payload={"selected": p}, client_token=t)
            for t, p in picks.items()
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    stored = Answer.objects.get()
    assert stored.revision == 5 and stored.revisions.count() == 4
    assert sorted(stored.revisions.values_list("revision", flat=True)) == [1, 2, 3, 4]
    tokens = {stored.client_token, *(r["client_token"] for r in stored.revisions.values_list("payload", flat=True))}
    assert tokens == set(picks)
    chosen = set(stored.items.filter(selected=True).values_list("candidate_id", flat=True))
    assert chosen == set(picks[stored.client_token])
