"""Playwright driving Debian's Chromium against pytest-django's live server.

Never `playwright install`: the browser is /usr/bin/chromium from Debian (make chromium).
Screenshots go to test-artifacts/ (kept by CI as artefacts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# The screens of reading rooms (issue 16): a laptop, the common desktop, full HD. A test that must hold at
# each takes `viewport` from `@pytest.mark.parametrize("viewport", READING_VIEWPORTS)` and calls
# `page.set_viewport_size(viewport)` first (one browser for the session, a new context per test as always).
READING_VIEWPORTS = [
    pytest.param({"width": w, "height": h}, id=f"{w}x{h}") for w, h in ((1366, 768), (1440, 900), (1920, 1080))
]

# The session-wide `browser` fixture lives in tests/conftest.py, so that every test folder shares the one
# Playwright instance (two sync Playwright instances cannot run in one thread).


@pytest.fixture
def page(browser, live_server, request):
    """A fresh browser context; a screenshot of the last state is kept in test-artifacts/.

    Any Content-Security-Policy violation the browser reports (an inline script, handler or style the
    policy blocks) fails the test: every page must work under the policy (issue 12, finding 14)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    violations: list[str] = []
    # ReDoc's bundle shows its vendor's logo from the vendor's CDN: blocked, as any outside load should be
    pg.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if "Content Security Policy" in msg.text and "https://cdn.redoc.ly/" not in msg.text
            else None
        ),
    )
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
    assert not violations, f"Content-Security-Policy violations: {violations}"


def login(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def wait_until(page, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression (or `() => …` function) until it is truthy.

    Playwright's `wait_for_function` compiles its predicate inside the page with eval, which the
    Content-Security-Policy forbids; `evaluate` runs through the DevTools protocol and is not affected."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {expression}")
        page.wait_for_timeout(100)


# --- reading helpers (tests/browser/test_reader_*.py) --------------------------------------------


def shot(page, name: str) -> None:
    """Keep an intermediate screenshot in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_reader_page(page, path: str) -> None:
    """Go to a case page and wait until reader.js and the query image are ready."""
    page.goto(path)
    wait_reader_ready(page)


def wait_reader_ready(page) -> None:
    page.wait_for_selector("#reader[data-ready='1']")
    page.wait_for_selector("#query-viewer[data-loaded='1']")


def tile_keys(page) -> list[str]:
    """Candidate keys in the order the tiles are shown (the ranking in rank mode)."""
    return page.eval_on_selector_all("#grid .tile", "els => els.map(e => e.dataset.key)")


def key_at(page, position: int) -> str:
    return page.get_attribute(f"#grid .tile[data-position='{position}']", "data-key")


@pytest.fixture
def fast_password_hashing(settings):
    """Cheap password hashes for the personas of a test (use with pytest.mark.usefixtures)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
