"""A real nginx running docker/nginx.conf.template in front of the app: reader images by X-Accel-Redirect.

nginx (Debian's nginx-light, `make nginx`) is started with the deployed server block (rendered as the
official image renders it, benchmarks/nginx.py) against pytest-django's live server with
IMAGE_ACCEL_REDIRECT=/protected-media/ and the test's MEDIA_ROOT. Through nginx: the reader gets the
file's bytes with the view's ETag and cache headers and no validator of nginx's own (no Last-Modified,
no size/time ETag that the same file shown twice would share); everyone else gets the view's refusal;
the internal location cannot be addressed from outside.
"""

from __future__ import annotations

import http.client

import pytest

from annotations import selectors
from benchmarks import nginx
from readerstudy.models import Assignment
from tests.reading.factories import study_make
from tests.reading.test_images import _answer, _mine, _url

pytestmark = pytest.mark.django_db(transaction=True)
PREFIX = "/protected-media/"


@pytest.fixture
def proxy(live_server, settings, tmp_path):
    """(port) of nginx in front of the live server; the view hands images over by X-Accel-Redirect."""
    assert nginx.nginx_binary(), "nginx is missing: run `make nginx` (apt-get install nginx-light)"
    settings.IMAGE_ACCEL_REDIRECT = PREFIX
    static = tmp_path / "static"
    static.mkdir()
    (static / "probe.css").write_text("body{}")
    upstream = live_server.url.split("://", 1)[1]
    proc, port = nginx.start(tmp_path / "nginx", upstream=upstream, media_root=settings.MEDIA_ROOT, static_root=static)
    yield port
    nginx.stop(proc)


def _get(port: int, path: str, client=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    headers = dict(headers or {})
    if client is not None:
        headers["Cookie"] = f"sessionid={client.cookies['sessionid'].value}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_reader_images_come_from_nginx_with_the_views_headers(client, reader, other_reader, proxy):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{study.pk}/cases/1/").json()
    _, case, candidates = _mine(study, reader)
    expected = [case.query, *(c.image for c in candidates)]
    urls = [payload["query"]["url"], *(c["url"] for c in payload["candidates"])]
    for url, image in zip(urls, expected, strict=True):
        status, headers, body = _get(proxy, url, client)
        assert status == 200, (url, status, body[:200])
        assert body == image.rendition.open("rb").read()
        assert headers["content-type"] == "image/png"
        assert headers["cache-control"] == "private, max-age=31536000, immutable"
        assert headers["etag"] == f'"{url.split("v=")[1]}"'
        assert "last-modified" not in headers and "x-accel-redirect" not in headers
        assert image.rendition.name not in str(headers) and image.content_hash not in str(headers)
        assert headers["x-content-type-options"] == "nosniff"
    # nginx sent those bytes, not Django: it answers a range (Django's file response does not)
    status, headers, body = _get(proxy, urls[0], client, {"Range": "bytes=0-3"})
    assert status == 206 and body == b"\x89PNG" and headers["etag"] == f'"{urls[0].split("v=")[1]}"'
    # a revalidation is answered by the view (304), not by nginx
    status, _, body = _get(proxy, urls[0], client, {"If-None-Match": f'"{urls[0].split("v=")[1]}"'})
    assert status == 304 and body == b""
    # the internal location is not addressable from outside, with or without a session
    for c in (client, None):
        status, _, _ = _get(proxy, PREFIX + case.query.rendition.name, c)
        assert status == 404


def test_blinding_through_nginx(client, reader, other_reader, proxy, django_user_model):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)
    client.force_login(reader)
    _, case, _ = _mine(study, reader)
    _, _, theirs = _mine(study, other_reader)
    for url in [_url(study, 1, c.key) for c in theirs] + [_url(study, 3, "query")]:
        status, headers, body = _get(proxy, url, client)
        assert status == 404 and b"\x89PNG" not in body, url
    mine = _get(proxy, _url(study, 1, "query"), client)[1]
    # the other reader sees the same query file at another place: nothing in the headers links the two
    order = selectors.reader_order(assignment=Assignment.objects.get(study=study, reader=other_reader))
    index = order.case_ids.index(case.pk) + 1
    for earlier in range(1, index):
        _answer(study, other_reader, earlier)
    client.force_login(other_reader)
    status, theirs_headers, _ = _get(proxy, _url(study, index, "query"), client)
    assert status == 200 and theirs_headers["etag"] != mine["etag"]
    status, headers, _ = _get(proxy, _url(study, 1, "query"))  # no session: the login page
    assert status == 302 and headers["location"].startswith("/accounts/login/")


def test_nginx_serves_static_files_and_proxies_the_rest(proxy):
    status, headers, body = _get(proxy, "/static/probe.css")
    assert status == 200 and body == b"body{}" and headers["x-content-type-options"] == "nosniff"
    status, _, body = _get(proxy, "/healthz/")
    assert status == 200
