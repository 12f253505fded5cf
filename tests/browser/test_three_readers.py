"""End to end: three readers complete a choose-5-of-10 study in Chromium; the database holds exactly
their picks, and the agreement statistics computed from them match an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from annotations import selectors
from annotations.models import Answer, AnswerItem
from readerstudy.models import Assignment
from tests.browser.conftest import login, shot, wait_reader_ready
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

# What each reader picks, by the digit of the position they see (1..9, 0 = 10), per case in their order.
PICKS = {"r1": ["12345", "67890"], "r2": ["12346", "13579"], "r3": ["23456", "24680"]}


def _read_study(page, study, username: str) -> None:
    """Log in and answer both cases with the keyboard digits of PICKS."""
    login(page, username, f"pw-{username}")
    page.goto(f"/read/{study.pk}/")
    page.click("#start")
    for n, digits in enumerate(PICKS[username], 1):
        page.wait_for_url(f"**/read/{study.pk}/case/{n}/")
        wait_reader_ready(page)
        for d in digits:
            page.keyboard.press(d)
        page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    shot(page, f"three_readers_{username}_done")
    page.context.clear_cookies()


def test_three_readers_complete_a_study(page, django_user_model):
    from core.roles import READER, user_set_roles

    readers = []
    for name in PICKS:
        user = django_user_model.objects.create_user(username=name, password=f"pw-{name}")
        user_set_roles(user=user, roles=[READER])
        readers.append(user)
    study = study_make(readers=readers, n_cases=2, n_candidates=10, k=5, name="Three readers")
    for user in readers:
        _read_study(page, study, user.username)

    # exactly 2 answers per reader, 5 selected and 5 not per answer, nothing else
    assert Answer.objects.filter(case__study=study).count() == 6
    for answer in Answer.objects.filter(case__study=study):
        items = AnswerItem.objects.filter(answer=answer)
        assert items.count() == 10 and items.filter(selected=True).count() == 5

    # the reader saw candidates in their own positions: what they pressed is what was stored
    for user in readers:
        assignment = Assignment.objects.get(study=study, reader=user)
        for n, case_id in enumerate(selectors.reader_order(assignment=assignment).case_ids):
            shown = dict(
                AnswerItem.objects.filter(answer__assignment=assignment, answer__case_id=case_id).values_list(
                    "shown_position", "selected"
                )
            )
            pressed = {10 if d == "0" else int(d) for d in PICKS[user.username][n]}
            assert {p for p, sel in shown.items() if sel} == pressed

    # Fleiss κ over (case, candidate) items, independent of the platform's statistics code
    cases = list(study.cases.order_by("pk"))
    table = np.array(
        [
            [
                AnswerItem.objects.get(answer__case=case, answer__assignment__reader=user, candidate=cand).selected
                for user in readers
            ]
            for case in cases
            for cand in case.candidates.order_by("pk")
        ],
        dtype=int,
    )
    expected = fleiss_kappa(aggregate_raters(table, n_cat=2)[0])
    from reports import stats

    assert stats.fleiss_kappa(table) == pytest.approx(expected)
