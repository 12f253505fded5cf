"""Rank-all in Chromium (keyboard arrows, move buttons and drag), and a rate-mode smoke test."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotations import selectors
from annotations.models import Answer
from readerstudy.models import AnswerMode, Assignment, Case
from tests.browser.conftest import READING_VIEWPORTS, key_at, login, open_reader_page, shot, tile_keys
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]


def _stored_ranking(assignment, case_id) -> list[int]:
    answer = Answer.objects.get(assignment=assignment, case_id=case_id)
    return list(answer.items.order_by("rank").values_list("candidate_id", flat=True))


def _ids(assignment, case_id, keys) -> list[int]:
    keymap = selectors.candidate_keymap(assignment=assignment, case=Case.objects.get(pk=case_id))
    return [keymap[k] for k in keys]


def test_rank_all_session_keyboard_and_drag(page, reader, live_server):
    study = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=2, n_candidates=5)
    assignment = Assignment.objects.get(study=study)
    order = selectors.reader_order(assignment=assignment)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    initial = tile_keys(page)
    assert initial == [key_at(page, p) for p in range(1, 6)]  # starts in the reader's positions
    expect(page.locator("#submit-btn")).to_be_enabled()

    # One number per tile, its rank.
    assert page.eval_on_selector_all("#grid .tile .badge", "els => els.map(e => e.textContent)") == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    # Keyboard: the digit 4 focuses the candidate at rank 4; Shift+←/↑ move it to the top.
    page.keyboard.press("4")
    for key in ("Shift+ArrowLeft", "Shift+ArrowUp", "Shift+ArrowLeft"):
        page.keyboard.press(key)
    expect(page.locator("#grid .tile").first).to_have_attribute("data-position", "4")
    expect(page.locator("#grid .tile").first.locator(".badge")).to_have_text("1")
    expect(page.locator("#grid .tile").first).to_have_attribute("aria-label", "Rank 1")
    # Shift+digit moves the focused candidate to that rank, and back.
    page.keyboard.press("Shift+Digit3")
    expect(page.locator("#grid .tile").nth(2)).to_have_attribute("data-position", "4")
    page.keyboard.press("Shift+Digit1")
    expect(page.locator("#grid .tile").first).to_have_attribute("data-position", "4")
    # Arrows move the focus: from the top (4) one step right is candidate 1; move it down to the end.
    page.keyboard.press("ArrowRight")
    for _ in range(4):
        page.keyboard.press("Shift+ArrowDown")
    expect(page.locator("#grid .tile").last).to_have_attribute("data-position", "1")
    # Drag: candidate 5 onto the first place.
    page.drag_and_drop("#grid .tile[data-position='5']", "#grid .tile[data-position='4']")
    expect(page.locator("#grid .tile").first).to_have_attribute("data-position", "5")
    ranking1 = tile_keys(page)
    assert ranking1 == [key_at(page, p) for p in (5, 4, 2, 3, 1)]
    expect(page.locator("#save-status")).to_have_text("Draft saved")
    shot(page, "rank_all_case1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/case/2/")
    open_reader_page(page, f"/read/{study.pk}/case/2/")

    # Case 2: mouse only, the move buttons and a drag.
    page.click("#grid .tile[data-position='3'] button.move[data-move='-1']")
    page.drag_and_drop("#grid .tile[data-position='1']", "#grid .tile[data-position='5']")
    ranking2 = tile_keys(page)
    assert ranking2 == [key_at(page, p) for p in (3, 2, 4, 5, 1)]
    page.click("#submit-btn")
    page.wait_for_url(f"**/read/{study.pk}/done/")

    assert Answer.objects.count() == 2
    assert _stored_ranking(assignment, order.case_ids[0]) == _ids(assignment, order.case_ids[0], ranking1)
    assert _stored_ranking(assignment, order.case_ids[1]) == _ids(assignment, order.case_ids[1], ranking2)
    answer = Answer.objects.get(assignment=assignment, case_id=order.case_ids[0])
    assert answer.items.get(rank=1).shown_position == 5


def test_rate_mode_smoke(page, reader, live_server):
    study = study_make(mode=AnswerMode.RATE, readers=[reader], n_cases=1, n_candidates=3, rating_min=1, rating_max=5)
    assignment = Assignment.objects.get(study=study)
    case_id = selectors.reader_order(assignment=assignment).case_ids[0]
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.click("#grid .tile[data-position='1'] button.rate[data-rating='5']")
    expect(page.locator("#submit-btn")).to_be_disabled()
    page.focus("#grid .tile[data-position='2']")
    page.keyboard.press("2")  # rates 2 and moves the focus to 3
    page.keyboard.press("4")
    expect(page.locator(".tile.rated")).to_have_count(3)
    page.keyboard.press("9")  # out of range: ignored
    expect(page.locator("#submit-btn")).to_be_enabled()
    shot(page, "rate_case1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    answer = Answer.objects.get(assignment=assignment, case_id=case_id)
    ratings = dict(answer.items.values_list("shown_position", "rating"))
    assert ratings == {1: 5, 2: 2, 3: 4}


@pytest.mark.parametrize("width,height", [(1366, 768), (1440, 900), (1920, 1080)])
def test_rank_all_ten_candidates_fit_the_width(page, reader, live_server, width, height):
    """No sideways scroll and every ⤢ button inside its own tile at the widths radiologists use."""
    study = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=10)
    page.set_viewport_size({"width": width, "height": height})
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    outside = page.eval_on_selector_all(
        "#grid .tile",
        """tiles => tiles.filter(t => {
            const box = t.getBoundingClientRect();
            return [...t.querySelectorAll('button')].some(b => {
                const r = b.getBoundingClientRect();
                return r.right > box.right + 0.5 || r.left < box.left - 0.5;
            });
        }).length""",
    )
    assert outside == 0
    shot(page, f"rank_all_{width}x{height}")


@pytest.mark.parametrize(
    "policy,stored",
    [("warn", True), ("refuse", False), ("allow", True)],
)
@pytest.mark.parametrize("viewport", READING_VIEWPORTS)
def test_untouched_ranking_policy(page, reader, live_server, policy, stored, viewport):
    page.set_viewport_size(viewport)
    study = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=10)
    study.untouched_ranking = policy
    study.save()
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.keyboard.press("Enter")
    if policy != "allow":
        expect(page.locator("#message")).to_be_in_viewport()  # the reader sees why nothing was submitted
    if policy == "warn":
        expect(page.locator("#message")).to_contain_text("Press Enter (or Submit) again")
        assert not Answer.objects.exists()
        page.keyboard.press("Enter")  # the second time submits the shown order
    elif policy == "refuse":
        expect(page.locator("#message")).to_contain_text("order them before submitting")
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_contain_text("order them before submitting")
        assert not Answer.objects.exists()
        page.keyboard.press("2")
        page.keyboard.press("Shift+Digit1")  # one change is enough
        page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    answer = Answer.objects.get()
    untouched = all(i.rank == i.shown_position for i in answer.items.all())
    assert untouched is stored
