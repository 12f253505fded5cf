"""The reader's images by signed links (`IMAGE_LINK_SECRET`, core/image_links.py): what the pages hand out.

With the setting the case page, the reading API and the prefetch list address every image as
/reader-images/<assignment folder>/<ETag>.png?s=<signature>&e=<expiry>: a relative symbolic link to the
image's file, signed for the reader's session cookie the way nginx's `secure_link_md5` checks it (computed
here independently). Blinding holds (no id, hash or file name; another reader gets other names), a reader
taken off a study loses the folder, and start-up refuses a secret nginx could not take or images in a bucket.
A real nginx answering these addresses by itself is tests/reading/test_images_nginx.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotations import selectors
from core import image_links
from readerstudy import services as study_services
from readerstudy.models import Assignment
from tests.reading.factories import study_make
from tests.reading.test_images import _answer, _mine

SECRET = "test-link-secret-0123456789abcdefghijkl"
LINK = re.compile(r"^/reader-images/([0-9a-f]{24})/([0-9a-f]{32})\.png\?s=([A-Za-z0-9_-]{22})&e=(\d+)$")


@pytest.fixture
def links(settings):
    settings.IMAGE_LINK_SECRET = SECRET
    return Path(settings.IMAGE_LINK_ROOT)


@pytest.fixture
def setting(reader, other_reader):
    return study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)


def nginx_md5(expires: str, path: str, cookie: str) -> str:
    """`secure_link_md5 "$secure_link_expires$uri$cookie_sessionid <secret>"`, as nginx compares it."""
    digest = hashlib.md5(f"{expires}{path}{cookie} {SECRET}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _addresses(client, study, index=1) -> tuple[str, list[str]]:
    payload = client.get(f"/api/reading/studies/{study.pk}/cases/{index}/").json()
    return payload["query"]["url"], [c["url"] for c in payload["candidates"]]


def _target(root: Path, url: str) -> Path:
    folder, name = LINK.match(url).group(1, 2)
    return root / folder / f"{name}.png"


def test_pages_hand_out_signed_links_to_the_right_files(client, reader, setting, links, settings):
    client.force_login(reader)
    cookie = client.cookies["sessionid"].value
    _, case, candidates = _mine(setting, reader)
    query, others = _addresses(client, setting)
    for url, image in zip([query, *others], [case.query, *(c.image for c in candidates)], strict=True):
        match = LINK.match(url)
        assert match, url
        _, _, signature, expires = match.groups()
        assert signature == nginx_md5(expires, url.split("?")[0], cookie)
        link = _target(links, url)
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: valid in nginx's container
        assert link.resolve() == Path(image.rendition.path).resolve()
    # the page's own addresses and the next case's prefetch list: links too, and the same ones case 2 gets
    html = client.get(f"/read/{setting.pk}/case/1/").content.decode()
    assert query in html.replace("&amp;", "&")
    handed = json.loads(re.search(r'<script id="prefetch-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert handed and all(LINK.match(u) for u in handed)
    _answer(setting, reader, 1)
    query2, others2 = _addresses(client, setting, 2)
    assert [query2, *others2] == handed
    assert all(_target(links, u).resolve().is_file() for u in handed)


def test_addresses_name_nothing_and_differ_between_readers(client, reader, other_reader, setting, links):
    client.force_login(reader)
    assignment, case, candidates = _mine(setting, reader)
    mine = _addresses(client, setting)
    folders = {LINK.match(u)[1] for u in [mine[0], *mine[1]]}
    assert folders == {image_links.folder_name(assignment.image_link_scope)}  # one folder per assignment
    secrets_of = [case.query, *(c.image for c in candidates)]
    for image in secrets_of:
        for secret in (image.content_hash, image.content_hash[:12], image.rendition.name, image.source_name):
            assert secret not in json.dumps(mine)  # and LINK: nothing but the two opaque names, signature, expiry
    # the other reader's address of the same query image: another folder, another name, the same file
    theirs_assignment = Assignment.objects.get(study=setting, reader=other_reader)
    index = selectors.reader_order(assignment=theirs_assignment).case_ids.index(case.pk) + 1
    for earlier in range(1, index):
        _answer(setting, other_reader, earlier)
    client.force_login(other_reader)
    theirs = _addresses(client, setting, index)[0]
    assert LINK.match(theirs)[1] != LINK.match(mine[0])[1] and LINK.match(theirs)[2] != LINK.match(mine[0])[2]
    assert _target(links, theirs).resolve() == _target(links, mine[0]).resolve()


def test_modality_values_get_their_own_link(client, reader, setting, links):
    client.force_login(reader)
    _, case, _ = _mine(setting, reader)
    query = case.query
    query.values = default_storage.save(
        f"datasets/{query.dataset_id}/values/{query.content_hash[:2]}/{query.content_hash}.png", ContentFile(b"16")
    )
    query.display = {"offset": 0, "scale": 1, "min": 0, "max": 1, "units": "HU", "modality": "CT"}
    query.save(update_fields=["values", "display"])
    payload = client.get(f"/api/reading/studies/{setting.pk}/cases/1/").json()
    values = payload["query"]["values"]
    assert LINK.match(values) and values != payload["query"]["url"]
    assert _target(links, values).read_bytes() == b"16"


def test_removing_a_reader_or_the_study_revokes_the_links(client, reader, other_reader, setting, links, coordinator):
    client.force_login(reader)
    query, _ = _addresses(client, setting)
    folder = _target(links, query).parent
    assert folder.is_dir()
    study_services.assignment_remove(study=setting, reader=reader)
    assert not folder.exists()
    client.force_login(other_reader)
    theirs, _ = _addresses(client, setting)
    setting.delete()  # the assignments go with the study, and their links with them
    assert not _target(links, theirs).parent.exists()


def test_without_the_secret_the_pages_address_the_view(client, reader, setting, settings):
    settings.IMAGE_LINK_SECRET = ""
    client.force_login(reader)
    query, _ = _addresses(client, setting)
    assert query.startswith(f"/read/{setting.pk}/case/1/image/query.png?v=")
    assert not Path(settings.IMAGE_LINK_ROOT).exists()


@pytest.mark.parametrize(
    ("now", "expires"),
    [
        (datetime(2026, 12, 6, 0, 0, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)),
        (datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)),
        (datetime(2026, 12, 31, 12, 0, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC)),
    ],
)
def test_an_address_lives_one_to_two_days_and_is_stable_within_a_day(now, expires, links, tmp_path):
    assert image_links.expiry(now) == int(expires.timestamp())
    target = tmp_path / "file.png"
    target.write_bytes(b"x")
    a = image_links.address(scope="s", name="n.png", target=target, session_cookie="c", now=now)
    b = image_links.address(scope="s", name="n.png", target=target, session_cookie="c", now=now.replace(hour=0))
    assert a == b and a.endswith(f"&e={int(expires.timestamp())}")
    assert image_links.address(scope="s", name="n.png", target=target, session_cookie="other", now=now) != a


def test_links_made_at_once_by_many_requests_are_all_good(links, tmp_path):
    target = tmp_path / "file.png"
    target.write_bytes(b"x")
    errors = []

    def make():
        try:
            for i in range(50):
                image_links.address(scope="s", name=f"{i}.png", target=target, session_cookie="c")
        except OSError as exc:  # noqa: PERF203 - what the test is about
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = links / image_links.folder_name("s")
    assert not errors
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.png" for i in range(50))  # no temporary left
    assert all((folder / f"{i}.png").read_bytes() == b"x" for i in range(50))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_LINK_SECRET": "short"}, "IMAGE_LINK_SECRET must be 32 or more letters"),
        ({"IMAGE_LINK_SECRET": SECRET[:30] + '"; }'}, "IMAGE_LINK_SECRET must be 32 or more letters"),
        (
            {"IMAGE_LINK_SECRET": SECRET, "MEDIA_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "cbir"},
            "IMAGE_LINK_SECRET needs MEDIA_STORAGE=local",
        ),
    ],
)
def test_start_up_refuses_a_secret_nginx_cannot_use(tmp_path, env, message):
    env = {**os.environ, "DEBUG": "true", "DATA_DIR": str(tmp_path), **env}
    result = subprocess.run([sys.executable, "-c", "import config.settings"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr
