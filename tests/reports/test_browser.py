"""End to end in Chromium: two readers complete a choose-k study, a researcher reads the interim report,
runs the bootstrap on a real worker (progress bar, reload) and downloads the numbers."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from annotations.models import AnswerItem
from reports import tables
from tests.browser.conftest import ARTIFACTS, login, open_reader_page
from tests.reading.factories import study_make
from tests.reports import independent as ind

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _session(browser, live_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return context, page


def _read(browser, live_server, study, username: str, picks: list[str]) -> None:
    """One reader chooses 2 of 4 on each case with the keyboard digits."""
    context, page = _session(browser, live_server)
    login(page, username, f"pw-{username}")
    for index, digits in enumerate(picks, start=1):
        open_reader_page(page, f"/read/{study.pk}/case/{index}/")
        for digit in digits:
            page.keyboard.press(digit)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/read/{study.pk}/{'done' if index == len(picks) else f'case/{index + 1}'}/")
    context.close()


def _selections(study, readers) -> np.ndarray:
    """(cases, candidates, readers) selections as stored, canonical order, readers by user name."""
    cases = list(study.cases.order_by("position"))
    out = np.zeros((len(cases), 4, len(readers)), bool)
    for r, user in enumerate(readers):
        for c, case in enumerate(cases):
            for item in AnswerItem.objects.filter(answer__assignment__reader=user, answer__case=case):
                out[c, item.candidate.position, r] = item.selected
    return out


def test_report_of_a_study_read_in_the_browser(browser, live_server, reader, other_reader, researcher, start_worker):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=4, k=2, name="Browser study")
    _read(browser, live_server, study, "reader", ["12", "13", "34"])
    _read(browser, live_server, study, "other_reader", ["12", "24", "34"])

    sel = _selections(study, [other_reader, reader])  # the report orders readers by name
    model = np.zeros((3, 4), bool)
    model[:, :2] = True  # study_make's distances grow with the catalogue position
    fleiss = ind.fleiss(sel)
    agreement = {u.username: ind.percent(sel[..., r], model) for r, u in enumerate([other_reader, reader])}

    worker = start_worker("filesystem://localhost/")
    context, page = _session(browser, live_server)
    login(page, "researcher", "pw-researcher")
    page.goto(f"/reports/studies/{study.pk}/")
    expect(page.locator(".interim-banner")).to_contain_text("Interim report")
    expect(page.locator("tr", has_text="Fleiss κ").locator("td").nth(1)).to_have_text(tables.fmt(fleiss))
    page.fill("input[name=n_resamples]", "200")
    page.click("text=Compute confidence intervals and p-values")
    expect(page.locator("main")).to_contain_text("Showing bootstrap report", timeout=90_000)
    expect(page.locator("main")).to_contain_text("200 resamples, seed 0")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report_page_choose_k.png"), full_page=True)

    data = json.loads(page.request.get(f"/reports/studies/{study.pk}/download/json/").text())
    s = data["choose_k"]
    assert data["interim"] is True and data["uncertainty"]["n_resamples"] == 200
    assert s["fleiss_kappa"]["estimate"] == pytest.approx(fleiss)
    assert s["fleiss_kappa"]["ci_low"] <= fleiss <= s["fleiss_kappa"]["ci_high"]
    method = next(iter(s["methods"].values()))
    for name, value in agreement.items():
        assert method["reader_agreement"][name]["estimate"] == pytest.approx(value)
    df = pd.read_csv(io.StringIO(page.request.get(f"/reports/studies/{study.pk}/download/csv/").text()))
    assert len(df) == 2 * 3 * 4 and df.answered.all() and (df.shown_position > 0).all()
    context.close()
    assert "report_bootstrap" in worker.output()
