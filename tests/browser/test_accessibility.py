"""Accessibility of the pages readers use, checked by axe-core (WCAG 2 A/AA rules) in Chromium (issue 16, point 8).

Every control labelled, contrast AA on the dark reading theme, keyboard focus visible. axe-core is
the maintained engine (through axe-playwright-python, which ships it); a violation names the rule
and the elements.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from readerstudy.models import AnswerMode
from tests.browser.conftest import login, open_reader_page
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def _violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page, options=WCAG)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:5])
        for v in result.response["violations"]
    ]


QUESTIONS = [
    {"key": "effusion", "text": "Pleural effusion?", "choices": ["yes", "no", "unsure"], "applies_to": "all"},
]


@pytest.mark.parametrize("mode", [AnswerMode.CHOOSE_K, AnswerMode.RANK_ALL, AnswerMode.RATE])
def test_reading_page_has_no_wcag_violation(page, reader, live_server, mode):
    study = study_make(
        mode=mode, k=2 if mode == AnswerMode.CHOOSE_K else None, readers=[reader], n_candidates=4, questions=QUESTIONS
    )
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    assert _violations(page) == [], page.url
    page.keyboard.press("?")
    assert _violations(page) == [], page.url


def test_reader_home_and_intro_have_no_wcag_violation(page, reader, live_server):
    study = study_make(readers=[reader], n_candidates=4)
    login(page, "reader", "pw-reader")
    page.goto("/read/")
    assert _violations(page) == [], page.url
    page.goto(f"/read/{study.pk}/")
    assert _violations(page) == [], page.url


def test_focus_is_visible_on_every_control_of_the_reading_page(page, reader, live_server):
    study = study_make(readers=[reader], n_candidates=4, questions=QUESTIONS)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.locator("body").click(position={"x": 2, "y": 2})
    unseen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        style = page.evaluate(
            """() => { const e = document.activeElement; if (!e || e === document.body) return null;
                 const s = getComputedStyle(e);
                 return {tag: e.tagName, id: e.id, cls: e.className, outline: s.outlineStyle, width: s.outlineWidth,
                         shadow: s.boxShadow}; }"""
        )
        if style is None:
            continue
        if style["outline"] == "none" and style["shadow"] == "none":
            unseen.append(style)
    assert unseen == []


def test_coordinator_study_and_case_pages_have_no_wcag_violation(page, coordinator, reader, live_server):
    study = study_make(readers=[reader], n_candidates=4)
    login(page, "coordinator", "pw-coordinator")
    for address in (f"/studies/{study.pk}/", f"/studies/{study.pk}/cases/1/", "/studies/", "/studies/new/"):
        page.goto(address)
        assert _violations(page) == [], page.url


def test_per_image_questions_by_keyboard(page, reader, live_server):
    """Letters answer the focused image's question (issue 16, point 7); Q switches to the query's questions."""
    from annotations.models import Answer, ImageAnswer

    questions = [
        {"key": "effusion", "text": "Effusion?", "choices": ["yes", "no", "unsure"], "applies_to": "all"},
        {"key": "quality", "text": "Quality", "choices": ["good", "poor"], "applies_to": "candidates"},
    ]
    study = study_make(readers=[reader], n_cases=1, n_candidates=2, k=1, questions=questions)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    tile1 = page.locator("#grid .tile[data-position='1']")
    # Each choice shows its letter; reserved shortcut letters are skipped (unsure → n taken → u).
    assert tile1.locator(".choice-key").all_text_contents() == ["Y", "N", "U", "G", "P"]
    page.keyboard.press("1")  # choose candidate 1 and focus it
    page.keyboard.press("y")
    page.keyboard.press("p")
    expect(tile1.locator("input[value='yes']")).to_be_checked()
    expect(tile1.locator("input[value='poor']")).to_be_checked()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("n")
    page.keyboard.press("g")
    page.keyboard.press("q")  # the query's question
    expect(page.locator(".questions[data-image='query']")).to_have_class("questions active")
    page.keyboard.press("u")
    expect(page.locator(".questions[data-image='query'] input[value='unsure']")).to_be_checked()
    page.keyboard.press("q")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    answer = Answer.objects.get()
    values = sorted(ImageAnswer.objects.filter(answer=answer).values_list("value", flat=True))
    assert values == sorted(["yes", "poor", "no", "good", "unsure"])
