"""Pages under the Content-Security-Policy in Chromium (issue 12, finding 14): the API docs (Swagger UI and
ReDoc, relaxed for their own inline code) render for a signed-in user, and the login lock shows its
message. The `page` fixture fails on any CSP violation the browser reports."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]


def test_api_docs_render_for_a_signed_in_user(page, researcher):
    page.goto("/api/docs/")
    assert "/accounts/login/" in page.url  # anonymous: the login page
    login(page, "researcher", "pw-researcher")
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .title").first).to_contain_text("CBIR reader-study platform API")
    page.goto("/api/redoc/")
    expect(page.locator("body")).to_contain_text("CBIR reader-study platform API", timeout=15_000)


def test_login_lock_in_the_browser(page, coordinator, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        page.goto("/accounts/login/")
        page.fill("input[name=username]", "coordinator")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "coordinator")
    page.fill("input[name=password]", "pw-coordinator")
    page.click("button[type=submit]")
    expect(page.locator("main")).to_contain_text("Too many failed logins")
    assert "/accounts/login/" in page.url
