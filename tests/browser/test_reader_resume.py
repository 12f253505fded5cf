"""Resume in Chromium: drafts restored after a reload, on another device, and after a quick reload;
flags; changing an answer where the study allows it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotations import selectors
from annotations.models import Answer, AnswerRevision, CaseFlag, CaseVisit, ImageAnswer
from readerstudy.models import Assignment, Case
from tests.browser.conftest import READING_VIEWPORTS, key_at, login, open_reader_page, shot, wait_reader_ready
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

EFFUSION = {"key": "effusion", "text": "Pleural effusion?", "choices": ["yes", "no"], "applies_to": "query"}


def _selected_positions(page) -> list[str]:
    return page.eval_on_selector_all("#grid .tile.selected", "els => els.map(e => e.dataset.position).sort()")


def test_resume_after_reload_and_on_another_device(page, browser, reader, live_server):
    study = study_make(readers=[reader], n_cases=2, n_candidates=6, k=3, questions=[EFFUSION])
    assignment = Assignment.objects.get(study=study)
    first_case = Case.objects.get(pk=selectors.reader_order(assignment=assignment).case_ids[0])
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.keyboard.press("2")
    page.keyboard.press("5")
    page.check("input[name='q-effusion-query'][value='yes']")
    expect(page.locator("#counter")).to_have_text("2/3")
    expect(page.locator("#save-status")).to_have_text("Draft saved")
    draft = CaseVisit.objects.get(assignment=assignment, case=first_case).draft
    keymap = selectors.candidate_keymap(assignment=assignment, case=first_case)
    assert set(draft["selected"]) == {keymap[key_at(page, 2)], keymap[key_at(page, 5)]}

    page.reload()
    wait_reader_ready(page)
    assert _selected_positions(page) == ["2", "5"]
    expect(page.locator("#counter")).to_have_text("2/3")
    expect(page.locator("input[name='q-effusion-query'][value='yes']")).to_be_checked()
    shot(page, "resume_after_reload")

    # Another device (fresh browser context, no local storage): the server's draft comes back.
    other = browser.new_context(viewport={"width": 1200, "height": 800}, base_url=live_server.url)
    try:
        device = other.new_page()
        login(device, "reader", "pw-reader")
        device.goto("/read/")
        device.click(f"a[href='/read/{study.pk}/']")
        device.click("#start")
        device.wait_for_url(f"**/read/{study.pk}/case/1/")
        wait_reader_ready(device)
        assert _selected_positions(device) == ["2", "5"]
        expect(device.locator("input[name='q-effusion-query'][value='yes']")).to_be_checked()
    finally:
        other.close()

    # Quick reload: a change followed at once by a reload is not lost either.
    page.keyboard.press("2")  # un-choose 2
    page.keyboard.press("6")
    page.reload()
    wait_reader_ready(page)
    assert _selected_positions(page) == ["5", "6"]
    expect(page.locator("#save-status")).to_have_text("Draft saved")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/case/2/")
    wait_reader_ready(page)

    # Resume from the study page lands on case 2.
    page.goto(f"/read/{study.pk}/")
    expect(page.locator("#start")).to_have_text("Resume at case 2")
    page.click("#start")
    page.wait_for_url(f"**/read/{study.pk}/case/2/")
    wait_reader_ready(page)
    for digit in "346":
        page.keyboard.press(digit)
    page.check("input[name='q-effusion-query'][value='no']")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")

    answer = Answer.objects.get(assignment=assignment, case=first_case)
    chosen = set(answer.items.filter(selected=True).values_list("shown_position", flat=True))
    assert chosen == {1, 5, 6}
    assert Answer.objects.filter(assignment=assignment).count() == 2
    assert list(ImageAnswer.objects.order_by("answer__case_id").values_list("value", flat=True)) in (
        ["yes", "no"],
        ["no", "yes"],
    )
    assert ImageAnswer.objects.get(answer=answer).value == "yes"


def _flag(page, study, assignment, comment: str) -> None:
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.click("#flag-btn")
    expect(page.locator("#flag-clear")).to_be_hidden()  # nothing to remove on an unflagged case
    expect(page.locator("#flag-comment")).to_be_in_viewport()
    page.fill("#flag-comment", comment)
    page.click("#flag-save")
    expect(page.locator("#flag-btn")).to_have_text("Flagged")
    assert CaseFlag.objects.get(assignment=assignment).comment == comment


@pytest.mark.parametrize("viewport", READING_VIEWPORTS)
def test_flags_reach_the_coordinators_study_page(page, reader, coordinator, live_server, browser, viewport):
    """The reader flags a case with a comment; the coordinator sees reader and comment on the study page
    and opens the case, read-only, from it (issue 16, point 6), at each reading-room screen size."""
    page.set_viewport_size(viewport)
    study = study_make(readers=[reader], n_cases=1, n_candidates=4, k=2)
    _flag(page, study, Assignment.objects.get(study=study), "The query is rotated")
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    try:
        coord = context.new_page()
        login(coord, "coordinator", "pw-coordinator")
        coord.goto(f"/studies/{study.pk}/")
        flags = coord.get_by_test_id("flags")
        expect(flags).to_contain_text("The query is rotated")
        expect(flags).to_contain_text("reader")
        assert coord.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        flags.get_by_role("link", name="Case 1").click()
        coord.wait_for_url(f"**/studies/{study.pk}/cases/1/")
        expect(coord.get_by_test_id("case-flags")).to_contain_text("The query is rotated")
        expect(coord.locator(".catalogue .thumb")).to_have_count(4)
        assert coord.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        shot(coord, f"flags_case_{viewport['width']}x{viewport['height']}")
    finally:
        context.close()


def test_flag_and_change_answer(page, reader, live_server):
    study = study_make(readers=[reader], n_cases=1, n_candidates=4, k=2, allow_revisions=True)
    assignment = Assignment.objects.get(study=study)
    _flag(page, study, assignment, "The query is rotated")
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    expect(page.locator(".end-page")).to_contain_text("review your cases")

    open_reader_page(page, f"/read/{study.pk}/case/1/")
    assert _selected_positions(page) == ["1", "2"]
    expect(page.locator("#submit-btn")).to_contain_text("Change answer")
    page.keyboard.press("1")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    answer = Answer.objects.get(assignment=assignment)
    assert answer.revision == 2
    assert set(answer.items.filter(selected=True).values_list("shown_position", flat=True)) == {2, 4}
    assert AnswerRevision.objects.get(answer=answer).revision == 1

    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.click("#flag-btn")
    expect(page.locator("#flag-clear")).to_be_visible()
    page.click("#flag-clear")
    expect(page.locator("#flag-btn")).to_have_text("Flag case")
    assert not CaseFlag.objects.exists()
