"""A whole choose-k reading session in Chromium: mouse, keyboard digits, counter, Enter, end page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotations import selectors
from annotations.models import Answer, AnswerItem
from readerstudy.models import Assignment, Case
from tests.browser.conftest import key_at, login, open_reader_page, shot, wait_reader_ready
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]


def _selected_ids(assignment, case_id) -> set[int]:
    answer = Answer.objects.get(assignment=assignment, case_id=case_id)
    return set(AnswerItem.objects.filter(answer=answer, selected=True).values_list("candidate_id", flat=True))


def test_choose_k_session_mouse_and_keyboard(page, reader, live_server):
    study = study_make(readers=[reader], n_cases=2, n_candidates=10, k=5, name="Paper 000 style")
    assignment = Assignment.objects.get(study=study)
    order = selectors.reader_order(assignment=assignment)
    login(page, "reader", "pw-reader")
    page.goto(f"/read/{study.pk}/")
    page.click("#start")
    page.wait_for_url(f"**/read/{study.pk}/case/1/")
    wait_reader_ready(page)
    expect(page.locator("#progress")).to_have_text("Case 1 of 2")
    submit = page.locator("#submit-btn")

    # Case 1: three clicks, then two digits.
    for position in (2, 7, 9):
        page.click(f"#grid .tile[data-position='{position}'] img", force=True)
    expect(page.locator("#counter")).to_have_text("3/5")
    expect(submit).to_be_disabled()
    page.keyboard.press("4")
    page.keyboard.press("0")  # candidate 10
    expect(page.locator("#counter")).to_have_text("5/5")
    expect(submit).to_be_enabled()
    page.keyboard.press("1")  # a sixth is refused
    expect(page.locator("#message")).to_contain_text("already chosen 5")
    expect(page.locator("#counter")).to_have_text("5/5")
    page.keyboard.press("7")  # un-choose 7 …
    expect(submit).to_be_disabled()
    page.keyboard.press("3")  # … choose 3 instead
    chosen1 = [key_at(page, p) for p in (2, 9, 4, 10, 3)]
    expect(page.locator(".tile.selected")).to_have_count(5)
    shot(page, "choose_k_case1_ready")

    # Help overlay, enlarged view and the viewer tools.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.focus("#grid .tile[data-position='3']")
    page.keyboard.press("e")
    expect(page.locator("#enlarged")).to_be_visible()
    expect(page.locator("#enlarged-title")).to_contain_text("Candidate 3 · chosen")
    page.wait_for_selector("#enlarged-candidate[data-loaded='1']")
    shot(page, "choose_k_enlarged")
    page.keyboard.press("Escape")
    expect(page.locator("#enlarged")).to_be_hidden()
    _viewer_tools(page)

    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/case/2/")
    wait_reader_ready(page)

    # Case 2: keyboard only (arrows + space, then digits).
    expect(page.locator("#progress")).to_have_text("Case 2 of 2")
    page.focus("#grid .tile[data-position='1']")
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")  # candidate 2
    for digit in "5678":
        page.keyboard.press(digit)
    expect(page.locator("#counter")).to_have_text("5/5")
    chosen2 = [key_at(page, p) for p in (2, 5, 6, 7, 8)]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    expect(page.locator("h1")).to_have_text("Thank you!")

    # The database holds exactly these answers.
    assert Answer.objects.count() == 2
    for case_id, keys in zip(order.case_ids, (chosen1, chosen2)):
        keymap = selectors.candidate_keymap(assignment=assignment, case=Case.objects.get(pk=case_id))
        assert _selected_ids(assignment, case_id) == {keymap[k] for k in keys}
    assert all(a.active_ms >= 0 for a in Answer.objects.all())


def _viewer_tools(page):
    viewer = page.locator("#query-viewer")
    expect(viewer).to_have_attribute("data-window", "128/256")
    box = page.locator("#query-viewer canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 60, cy + 20, steps=4)  # narrower window, lower level
    page.mouse.up()
    expect(viewer).to_have_attribute("data-window", "108/196")
    page.mouse.wheel(0, -400)
    expect(viewer).not_to_have_attribute("data-zoom", "1.00")
    page.keyboard.down("Shift")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy + 10, steps=3)
    page.mouse.up()
    page.keyboard.up("Shift")
    expect(viewer).not_to_have_attribute("data-pan", "0,0")
    page.select_option("#query-viewer select.preset", index=1)
    expect(viewer).to_have_attribute("data-window", "128/128")
    page.locator("#grid .tile[data-position='3']").focus()
    page.keyboard.press("i")
    expect(viewer).to_have_attribute("data-inverted", "1")
    shot(page, "choose_k_viewer_tools")
    page.keyboard.press("r")
    expect(viewer).to_have_attribute("data-window", "128/256")
    expect(viewer).to_have_attribute("data-inverted", "0")
    expect(viewer).to_have_attribute("data-zoom", "1.00")


def test_answered_case_is_read_only_and_enter_goes_on(page, reader, live_server):
    study = study_make(readers=[reader], n_cases=2, n_candidates=4, k=2)
    assignment = Assignment.objects.get(study=study)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_url("**/case/2/")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    expect(page.locator("#answered-notice")).to_contain_text("cannot be changed")
    expect(page.locator(".tile.selected")).to_have_count(2)
    page.keyboard.press("3")  # no effect
    expect(page.locator(".tile.selected")).to_have_count(2)
    page.keyboard.press("Enter")
    page.wait_for_url("**/case/2/")
    assert Answer.objects.filter(assignment=assignment).count() == 1
