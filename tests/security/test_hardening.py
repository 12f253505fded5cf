"""Issue 12, finding 14: API schema and docs need a login; a Content-Security-Policy that every page keeps
(no inline script, handler or <style>); `Cache-Control: no-store, private` for signed-in users (the reader's
per-assignment image URLs: private and cacheable); sessions that end when idle."""

from __future__ import annotations

import re

import pytest

from annotations import selectors
from readerstudy.models import Assignment
from tests.reading.factories import study_make


@pytest.fixture
def study(reader, other_reader):
    return study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)


def test_api_schema_and_docs_need_a_login(client, researcher):
    assert client.get("/api/schema/").status_code in (401, 403)
    for url in ("/api/docs/", "/api/redoc/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(researcher)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and "unsafe-inline" in docs["Content-Security-Policy"]


INLINE = [
    # data blocks (json_script) are not run; any other <script> must load a file
    (re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def _pages(study, reader, coordinator):
    assignment = Assignment.objects.get(study=study, reader=reader)
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=1)
    key = selectors.reader_candidates(assignment=assignment, case=case)[0].key
    return {
        reader: ["/", "/read/", f"/read/{study.pk}/", f"/read/{study.pk}/case/1/"],
        coordinator: [
            "/",
            "/studies/",
            f"/studies/{study.pk}/",
            f"/studies/{study.pk}/cases/1/",
            "/studies/new/",
            f"/reports/studies/{study.pk}/",
            "/datasets/",
            f"/datasets/{study.dataset_id}/",
            f"/datasets/{study.dataset_id}/runs/",
            f"/datasets/{study.dataset_id}/import/",
            f"/datasets/{study.dataset_id}/import/pacs/",
            f"/datasets/{study.dataset_id}/compare/",
            "/reports/",
        ],
    }, f"/read/{study.pk}/case/1/image/{key}.png"


def test_every_page_carries_the_policy_and_no_inline_code(client, study, reader, coordinator):
    pages, image = _pages(study, reader, coordinator)
    for user, urls in pages.items():
        client.force_login(user)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            policy = response["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src-attr")[0], url
            assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
            html = response.content.decode()
            for pattern, what in INLINE:
                assert not pattern.search(html), f"{url}: {what}: {pattern.search(html).group(0)}"
            cache = {part.strip() for part in response["Cache-Control"].split(",")}
            assert {"no-store", "private"} <= cache, url  # a view's own never_cache adds to it
    client.force_login(reader)
    cached = client.get(image)
    assert cached.status_code == 200 and cached["Cache-Control"] == "private, max-age=86400"


def test_api_responses_are_not_stored(client, coordinator):
    client.force_login(coordinator)
    assert client.get("/api/studies/")["Cache-Control"] == "no-store, private"


def test_login_page_and_anonymous_responses(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200 and "Content-Security-Policy" in response
    assert response["X-Frame-Options"] == "DENY" and response["Referrer-Policy"] == "same-origin"


def test_sessions_end_when_idle(client, reader, settings):
    assert settings.SESSION_COOKIE_AGE <= 60 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    client.force_login(reader)
    response = client.get("/read/")
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]  # renewed on every request: an idle timeout
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
