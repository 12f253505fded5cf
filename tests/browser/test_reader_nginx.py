"""Chromium reading through nginx (docker/nginx.conf.template) as the Docker set-up serves it: images by signed links.

The live server runs with IMAGE_LINK_SECRET; Chromium talks to nginx only. The reader logs in, reads case 1
and goes on to case 2: every image the pages show and prefetch is a signed link that nginx answered by
itself (the browser sends its session cookie with them; no image request reaches Django), every image is
painted, and case 2's images were prefetched while case 1 was read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import nginx
from tests.browser.conftest import ARTIFACTS, wait_reader_ready, wait_until
from tests.reading.factories import study_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]
SECRET = "browser-test-link-secret-0123456789abcdef"


@pytest.fixture
def front(live_server, settings, tmp_path):
    """The address of nginx in front of the live server, with signed image links on."""
    assert nginx.nginx_binary(), "nginx is missing: run `make nginx` (apt-get install nginx-light)"
    settings.IMAGE_LINK_SECRET = SECRET
    static = Path(__file__).resolve().parents[2] / "static"  # the reader's CSS and JS, as collectstatic copies them
    upstream = live_server.url.split("://", 1)[1]
    links = {"link_root": settings.IMAGE_LINK_ROOT, "link_secret": SECRET}
    proc, port = nginx.start(tmp_path / "nginx", upstream=upstream, static_root=static, **links)
    yield f"http://127.0.0.1:{port}"
    nginx.stop(proc)


PAINTED = "() => [...document.querySelectorAll('#grid .tile img.tile-img')].every(i => i.complete && i.naturalWidth)"


def test_a_reader_reads_through_nginx_with_signed_image_links(browser, front, reader, settings):
    study = study_make(readers=[reader], n_cases=2, n_candidates=4, k=2)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=front)
    page = context.new_page()
    page.set_default_timeout(15_000)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url.split(front, 1)[-1]))
    try:
        page.goto("/accounts/login/")
        page.fill("input[name=username]", "reader")
        page.fill("input[name=password]", "pw-reader")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        page.goto(f"/read/{study.pk}/case/1/")
        wait_reader_ready(page)
        wait_until(page, PAINTED)
        sources = page.eval_on_selector_all("#grid .tile img.tile-img", "els => els.map(e => e.getAttribute('src'))")
        assert len(sources) == 4 and all(s.startswith("/reader-images/") for s in sources), sources
        prefetch = page.evaluate("() => JSON.parse(document.getElementById('prefetch-data').textContent)")
        assert prefetch and all(u.startswith("/reader-images/") for u in prefetch)
        wait_until(page, f"() => {len(prefetch)} <= performance.getEntriesByType('resource').filter(e => "
                   f"{prefetch!r}.some(u => e.name.endsWith(u))).length")  # fmt: skip
        page.keyboard.press("1")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/read/{study.pk}/case/2/")
        wait_reader_ready(page)
        wait_until(page, PAINTED)
        case2 = page.eval_on_selector_all("#grid .tile img.tile-img", "els => els.map(e => e.getAttribute('src'))")
        assert set(case2) <= set(prefetch)  # the addresses case 1 prefetched: the browser holds them
        images = [u for u in requested if u.startswith("/reader-images/") or "/image/" in u or "/values/" in u]
        assert images and all(u.startswith("/reader-images/") for u in images), images
        # prefetched with an immutable answer: case 2's candidates came from the browser's cache (nothing sent)
        fetched = page.evaluate(
            "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/reader-images/'))"
            ".map(e => [new URL(e.name).pathname + new URL(e.name).search, e.transferSize])"
        )
        assert fetched and all(size == 0 for url, size in fetched if url in case2), fetched
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "reader_through_nginx.png"))
        context.close()
