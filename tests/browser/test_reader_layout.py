"""Images large enough to judge, linked viewers and the compare view, in Chromium (issue 16, points 2-3).

At the screen sizes of reading rooms the whole 10-image catalogue is visible without scrolling, each
candidate as large as the window allows (≥ 250 px at 1440×900); window/level and invert of the query
reach every candidate when linked (checked on the pixels Chromium paints), zoom/pan when zoom is
linked too; the compare view shows the query and one candidate at the same size, window and zoom.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from annotations.models import Answer
from readerstudy.models import AnswerMode
from tests.browser.conftest import READING_VIEWPORTS, login, open_reader_page, shot
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

VIEWPORTS = [(1366, 768), (1440, 900), (1920, 1080)]  # READING_VIEWPORTS as (width, height)


def _geometry(page) -> dict:
    return page.evaluate(
        """() => {
          const imgs = [...document.querySelectorAll('#grid .tile img.tile-img')].map(i => i.getBoundingClientRect());
          const q = document.querySelector('#query-viewer').getBoundingClientRect();
          return {sizes: imgs.map(r => Math.min(r.width, r.height)), bottom: Math.max(...imgs.map(r => r.bottom)),
                  right: Math.max(...imgs.map(r => r.right)), queryRight: q.right, queryBottom: q.bottom,
                  innerWidth: innerWidth, innerHeight: innerHeight,
                  scrollWidth: document.documentElement.scrollWidth};
        }"""
    )


@pytest.mark.parametrize("mode", [AnswerMode.CHOOSE_K, AnswerMode.RANK_ALL])
@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_the_whole_catalogue_fits_and_is_large(page, reader, live_server, mode, width, height):
    study = study_make(mode=mode, k=5 if mode == AnswerMode.CHOOSE_K else None, readers=[reader], n_candidates=10)
    page.set_viewport_size({"width": width, "height": height})
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    g = _geometry(page)
    assert g["scrollWidth"] <= width  # no sideways scroll
    assert g["bottom"] <= height and g["right"] <= width  # every candidate visible without scrolling
    assert g["queryBottom"] <= height
    smallest = min(g["sizes"])
    assert smallest >= {1366: 200, 1440: 250, 1920: 300}[width], g
    shot(page, f"layout_{mode}_{width}x{height}")


def _mean_grey(locator) -> float:
    return float(np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"), dtype=float).mean())


def _drag(page, selector, dx, dy, *, shift=False):
    box = page.locator(selector).bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + dx, cy + dy, steps=4)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


@pytest.mark.parametrize("viewport", READING_VIEWPORTS)
def test_linked_window_invert_and_zoom_reach_every_candidate(page, reader, live_server, viewport):
    page.set_viewport_size(viewport)
    study = study_make(readers=[reader], n_candidates=10, k=5)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    root, query = page.locator("#reader"), page.locator("#query-viewer")
    tile = page.locator("#grid .tile[data-position='4'] .tile-image")
    expect(page.locator("#link-btn")).to_have_attribute("aria-pressed", "true")
    before = _mean_grey(tile)

    # Invert (I) reaches the candidates: Chromium paints their complement.
    page.keyboard.press("i")
    expect(query).to_have_attribute("data-inverted", "1")
    expect(root).to_have_attribute("data-tiles-window", "128/256/inv")
    assert _mean_grey(tile) == pytest.approx(255 - before, abs=6)
    page.keyboard.press("i")

    # Window/level dragged on the query: the candidates get the same window.
    _drag(page, "#query-viewer canvas", -60, 20)
    expect(query).to_have_attribute("data-window", "108/196")
    expect(root).to_have_attribute("data-tiles-window", "108/196")
    assert _mean_grey(tile) != pytest.approx(before, abs=1)

    # Zoom is not linked by default; Z links it.
    page.mouse.wheel(0, -400)
    expect(query).not_to_have_attribute("data-zoom", "1.00")
    expect(root).not_to_have_attribute("data-tiles-zoom", query.get_attribute("data-zoom"))
    page.keyboard.press("z")
    expect(page.locator("#link-zoom-btn")).to_have_attribute("aria-pressed", "true")
    expect(root).to_have_attribute("data-tiles-zoom", query.get_attribute("data-zoom"))
    transform = page.eval_on_selector("#grid .tile[data-position='4'] img.tile-img", "e => e.style.transform")
    assert "scale(" in transform

    # Unlinked (L): the query alone changes.
    page.keyboard.press("l")
    expect(page.locator("#link-btn")).to_have_attribute("aria-pressed", "false")
    _drag(page, "#query-viewer canvas", 40, -10)
    expect(query).not_to_have_attribute("data-window", "108/196")
    expect(root).to_have_attribute("data-tiles-window", "108/196")

    # R resets every image.
    page.keyboard.press("r")
    expect(query).to_have_attribute("data-window", "128/256")
    expect(root).to_have_attribute("data-tiles-window", "128/256")
    expect(root).to_have_attribute("data-tiles-zoom", "1.00")
    assert _mean_grey(tile) == pytest.approx(before, abs=1)
    expect(page.locator("#link-btn")).to_be_in_viewport()  # the one visible "linked" switch
    shot(page, f"linked_viewers_{viewport['width']}x{viewport['height']}")


def test_compare_view_same_size_window_and_zoom_and_answers_from_there(page, reader, live_server):
    study = study_make(readers=[reader], n_cases=1, n_candidates=10, k=2)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    _drag(page, "#query-viewer canvas", -60, 20)  # linked: the compare view starts from this window
    page.focus("#grid .tile[data-position='3']")
    page.keyboard.press("e")
    expect(page.locator("#enlarged")).to_be_visible()
    page.wait_for_selector("#enlarged-candidate[data-loaded='1']")
    left, right = page.locator("#enlarged-query"), page.locator("#enlarged-candidate")
    lb, rb = left.bounding_box(), right.bounding_box()
    assert abs(lb["width"] - rb["width"]) <= 1 and abs(lb["height"] - rb["height"]) <= 1
    assert lb["width"] >= 600  # at 1400×900 each side is about half the screen
    expect(left).to_have_attribute("data-window", "108/196")
    expect(right).to_have_attribute("data-window", "108/196")

    # Zoom in the candidate: the query beside it follows (always, in the compare view).
    box = right.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    expect(right).not_to_have_attribute("data-zoom", "1.00")
    expect(left).to_have_attribute("data-zoom", right.get_attribute("data-zoom"))

    # Step with the arrows (the next candidate keeps the window and zoom), choose from there.
    page.keyboard.press("ArrowRight")
    expect(page.locator("#enlarged-title")).to_contain_text("Candidate 4")
    page.wait_for_selector("#enlarged-candidate[data-loaded='1']")
    expect(right).to_have_attribute("data-zoom", left.get_attribute("data-zoom"))
    page.click("#enlarged-toggle")
    expect(page.locator("#enlarged-title")).to_contain_text("Candidate 4 · chosen")
    page.keyboard.press("7")
    expect(page.locator("#counter")).to_have_text("2/2")
    shot(page, "compare_view")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study.pk}/done/")
    assert Answer.objects.count() == 1


def test_compare_view_ranks_from_there(page, reader, live_server):
    study = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=6)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    page.keyboard.press("5")  # the candidate at rank 5
    page.keyboard.press("e")
    expect(page.locator("#enlarged-title")).to_have_text("Rank 5")
    page.keyboard.press("Shift+Digit1")
    expect(page.locator("#enlarged-title")).to_have_text("Rank 1")
    page.keyboard.press("Escape")
    expect(page.locator("#grid .tile").first.locator(".badge")).to_have_text("1")
