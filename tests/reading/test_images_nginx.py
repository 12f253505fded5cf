"""A real nginx running docker/nginx.conf.template: the reader's images by signed links, with no Python at all.

nginx (Debian's nginx-light, `make nginx`) is started with the deployed server block (rendered as the
official image renders it, benchmarks/nginx.py). The reader's pages (Django's test client) hand out the
links; nginx then sends every image by itself — its upstream is a port nobody listens on, so no request
can reach Python — with the immutable cache header and no validator of its own (no Last-Modified or
size/time ETag that two links to one file would share). It refuses a browser without the reader's session
cookie or with another one, a changed signature, path or expiry (403), an expired address (410) and the
address of a reader taken off the study (404). With the app behind it, static files and pages are served.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks import nginx
from core import image_links
from readerstudy import services as study_services
from tests.reading.factories import study_make
from tests.reading.test_images import _mine

SECRET = "nginx-test-link-secret-0123456789abcdef"


def _dead_port() -> str:
    with socket.socket() as s:  # bound, never listening, then closed: connections to it are refused
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _start(tmp_path: Path, settings, upstream: str) -> tuple:
    assert nginx.nginx_binary(), "nginx is missing: run `make nginx` (apt-get install nginx-light)"
    settings.IMAGE_LINK_SECRET = SECRET
    static = tmp_path / "static"
    static.mkdir(exist_ok=True)
    (static / "probe.css").write_text("body{}")
    links = {"link_root": settings.IMAGE_LINK_ROOT, "link_secret": SECRET}
    return nginx.start(tmp_path / "nginx", upstream=upstream, static_root=static, **links)


@pytest.fixture
def alone(settings, tmp_path):
    """The port of nginx with nothing behind it: whatever it answers, it answered by itself."""
    proc, port = _start(tmp_path, settings, _dead_port())
    yield port
    nginx.stop(proc)


def _get(port: int, path: str, cookie: str | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    headers = dict(headers or {})
    if cookie is not None:
        headers["Cookie"] = f"csrftoken=x; sessionid={cookie}; other=y"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _case(client, study, index=1) -> tuple[list[str], str]:
    payload = client.get(f"/api/reading/studies/{study.pk}/cases/{index}/").json()
    return [payload["query"]["url"], *(c["url"] for c in payload["candidates"])], client.cookies["sessionid"].value


@pytest.mark.django_db
def test_nginx_alone_sends_the_readers_images(client, reader, other_reader, alone):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)
    client.force_login(reader)
    urls, cookie = _case(client, study)
    _, case, candidates = _mine(study, reader)
    assert _get(alone, "/healthz/")[0] == 502  # nothing behind nginx
    for url, image in zip(urls, [case.query, *(c.image for c in candidates)], strict=True):
        status, headers, body = _get(alone, url, cookie)
        assert status == 200, (url, status, body[:200])
        assert body == image.rendition.open("rb").read()
        assert headers["content-type"] == "image/png"
        assert headers["cache-control"] == "private, max-age=31536000, immutable"
        assert "last-modified" not in headers and "etag" not in headers
        assert headers["x-content-type-options"] == "nosniff"
        assert image.rendition.name not in str(headers) and image.content_hash not in str(headers)
    # the next case's prefetch list works the same way before that case is open
    html = client.get(f"/read/{study.pk}/case/1/").content.decode()
    prefetch = json.loads(re.search(r'<script id="prefetch-data" type="application/json">(.*?)</script>', html)[1])
    assert prefetch and all(_get(alone, url, cookie)[0] == 200 for url in prefetch)
    status, _, body = _get(alone, urls[0], cookie, {"Range": "bytes=0-3"})
    assert status == 206 and body == b"\x89PNG"


@pytest.mark.django_db
def test_nginx_refuses_everyone_else(client, reader, other_reader, alone):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)
    client.force_login(reader)
    urls, cookie = _case(client, study)
    url = urls[0]
    path, query = url.split("?")
    signature, expires = re.fullmatch(r"s=([^&]+)&e=(\d+)", query).groups()
    client.force_login(other_reader)
    _, theirs = _case(client, study)
    refused = {
        "no session cookie": (url, None),
        "another reader's session": (url, theirs),
        "a changed signature": (f"{path}?s={signature[::-1]}&e={expires}", cookie),
        "a later expiry": (f"{path}?s={signature}&e={int(expires) + 86400}", cookie),
        "no expiry": (f"{path}?s={signature}", cookie),
        "another name in the folder": (f"{path.replace('.png', '')[:-1]}0.png?{query}", cookie),
        "the folder itself": (f"{path.rsplit('/', 1)[0]}/?{query}", cookie),
    }
    for what, (address, session) in refused.items():
        status, _, body = _get(alone, address, session)
        assert status == 403 and b"\x89PNG" not in body, what
    # an address made three days ago, signed and linked: expired
    _, case, _ = _mine(study, reader)
    old = image_links.address(
        scope="old", name="x.png", target=Path(case.query.rendition.path), session_cookie=cookie,
        now=datetime.now(UTC) - timedelta(days=3),
    )  # fmt: skip
    assert _get(alone, old, cookie)[0] == 410
    # the reader taken off the study: the link is gone
    study_services.assignment_remove(study=study, reader=reader)
    assert _get(alone, url, cookie)[0] == 404


@pytest.mark.django_db(transaction=True)
def test_nginx_serves_static_files_and_proxies_the_rest(live_server, settings, tmp_path):
    proc, port = _start(tmp_path, settings, live_server.url.split("://", 1)[1])
    try:
        status, headers, body = _get(port, "/static/probe.css")
        assert status == 200 and body == b"body{}" and headers["x-content-type-options"] == "nosniff"
        assert _get(port, "/healthz/")[0] == 200
        status, headers, _ = _get(port, "/read/1/case/1/")
        assert status == 302 and headers["location"].startswith("/accounts/login/")
    finally:
        nginx.stop(proc)
