"""Saliency overlays in Chromium: the toggle (button and S key) shows and hides them over the images,
without touching the answer or the layout; a study that does not show saliency has no toggle."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, open_reader_page, shot, wait_until
from tests.reading.factories import saliency_run_make, study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]

OVERLAYS = "#query-viewer img.viewer-overlay, #grid img.saliency-overlay"
ALL_LOADED = f"""() => {{
    const imgs = [...document.querySelectorAll("{OVERLAYS}")];
    return imgs.length === 3 && imgs.every(i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0);
}}"""


def _saliency_study(reader, *, show_saliency: bool):
    """One case of 6 candidates; the run holds overlays of the query and of candidates 0 and 1 (canonical order)."""
    study = study_make(readers=[reader], n_cases=1, n_candidates=6, k=2, show_saliency=show_saliency)
    case = study.cases.get()
    ids = [case.query_id, *case.candidates.filter(position__lt=2).values_list("image_id", flat=True)]
    run = saliency_run_make(study.dataset, overlays=ids)
    study.builder, study.builder_config = "top_n", {"run": run.pk}
    study.save(update_fields=["builder", "builder_config"])
    return study


def _boxes(page) -> list:
    return page.eval_on_selector_all(
        "#grid .tile, #query-viewer canvas",
        "els => els.map(e => {const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })",
    )


def test_toggle_shows_and_hides_the_overlays(page, reader, live_server):
    study = _saliency_study(reader, show_saliency=True)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    button = page.locator("#saliency-btn")
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#grid img.saliency-overlay")).to_have_count(2)
    for overlay in page.locator(OVERLAYS).all():
        expect(overlay).to_be_hidden()
    page.keyboard.press("1")
    before = _boxes(page)

    # The button shows them, loaded from the server, over their images; nothing else moves or changes.
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    wait_until(page, ALL_LOADED)
    expect(page.locator("#query-viewer")).to_have_attribute("data-overlay", "1")
    assert _boxes(page) == before
    tile = page.locator("#grid .tile", has=page.locator("img.saliency-overlay")).first
    assert tile.locator("img.saliency-overlay").bounding_box() == tile.locator("img").first.bounding_box()
    expect(page.locator("#counter")).to_have_text("1/2")
    shot(page, "reader_saliency_on")

    # Clicking a candidate on its overlay still chooses (or un-chooses) it.
    was_selected = "selected" in tile.get_attribute("class").split()
    box = tile.locator("img.saliency-overlay").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#counter")).to_have_text("0/2" if was_selected else "2/2")

    # The S key hides them again, and shows them again (also in the enlarged view).
    page.keyboard.press("s")
    expect(button).to_have_attribute("aria-pressed", "false")
    for overlay in page.locator(OVERLAYS).all():
        expect(overlay).to_be_hidden()
    expect(page.locator("#query-viewer")).to_have_attribute("data-overlay", "0")
    page.keyboard.press("s")
    expect(button).to_have_attribute("aria-pressed", "true")
    wait_until(page, ALL_LOADED)
    tile.focus()
    page.keyboard.press("e")
    expect(page.locator("#enlarged-candidate img.viewer-overlay")).to_be_visible()
    expect(page.locator("#enlarged-query img.viewer-overlay")).to_be_visible()
    page.keyboard.press("s")
    expect(page.locator("#enlarged-candidate img.viewer-overlay")).to_be_hidden()
    page.keyboard.press("Escape")
    for overlay in page.locator(OVERLAYS).all():
        expect(overlay).to_be_hidden()

    # The choice is kept per reader and study: a reload shows them if they were on.
    page.keyboard.press("s")
    page.reload()
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    expect(page.locator("#saliency-btn")).to_have_attribute("aria-pressed", "true")
    wait_until(page, ALL_LOADED)


def test_no_toggle_when_the_study_does_not_show_saliency(page, reader, live_server):
    study = _saliency_study(reader, show_saliency=False)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    expect(page.locator("#saliency-btn")).to_have_count(0)
    page.keyboard.press("s")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    expect(page.locator("#help")).not_to_contain_text("saliency")
    expect(page.locator("img.saliency-overlay, img.viewer-overlay")).to_have_count(0)
