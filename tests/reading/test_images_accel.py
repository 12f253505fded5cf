"""The reader's images handed to nginx (`IMAGE_ACCEL_REDIRECT`): authorised once by the view, sent by the web server.

With the setting the view answers an authorised reader with an empty body and `X-Accel-Redirect` to the
internal location (the file's content-addressed name under MEDIA_ROOT), with the view's own ETag and
cache headers; everyone else gets exactly what they get without it (404 / 403 / the login page), and no
redirect header. Without the setting the bytes come from Django (tests/reading/test_images.py); a real
nginx running docker/nginx.conf.template is in tests/reading/test_images_nginx.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotations import selectors
from core.roles import READER, user_set_roles
from readerstudy.models import Assignment
from tests.reading.factories import study_make
from tests.reading.test_images import _answer, _body, _mine, _url

PREFIX = "/protected-media/"
IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture
def setting(reader, other_reader):
    return study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)


@pytest.fixture
def accel(settings):
    settings.IMAGE_ACCEL_REDIRECT = PREFIX


def _versioned(client, study, index=1):
    payload = client.get(f"/api/reading/studies/{study.pk}/cases/{index}/").json()
    return payload["query"]["url"], [c["url"] for c in payload["candidates"]]


def test_an_authorised_reader_gets_an_internal_redirect(client, reader, setting, accel):
    client.force_login(reader)
    _, case, candidates = _mine(setting, reader)
    query_url, candidate_urls = _versioned(client, setting)
    by_key = {c.key: c for c in candidates}
    for url in [query_url, *candidate_urls]:
        response = client.get(url)
        assert response.status_code == 200
        assert response.content == b""  # nginx sends the bytes
        key = re.search(r"/image/([^/.]+)\.png", url)[1]
        image = case.query if key == "query" else by_key[key].image
        assert response["X-Accel-Redirect"] == PREFIX + image.rendition.name
        # content-addressed (dataset, kind, hash): no source file name, label or image id in it
        assert re.fullmatch(rf"datasets/\d+/rendition/[0-9a-f]{{2}}/{image.content_hash}\.png", image.rendition.name)
        assert image.source_name not in response["X-Accel-Redirect"]
        assert response["Content-Type"] == "image/png"
        assert response["Cache-Control"] == IMMUTABLE
        assert response["ETag"] == f'"{url.split("v=")[1]}"'
        name = "query.png" if key == "query" else "candidate.png"
        assert response["Content-Disposition"] == f'inline; filename="{name}"'


def test_unversioned_and_conditional_requests_keep_their_headers(client, reader, setting, accel):
    client.force_login(reader)
    query = client.get(_url(setting, 1, "query"))
    assert query["Cache-Control"] == "private, no-cache" and query.has_header("X-Accel-Redirect")
    again = client.get(_url(setting, 1, "query"), HTTP_IF_NONE_MATCH=query["ETag"])
    # Django answers the revalidation itself: nginx has nothing to send
    assert again.status_code == 304 and not again.has_header("X-Accel-Redirect")
    key = _mine(setting, reader)[2][0].key
    assert client.get(_url(setting, 1, key))["Cache-Control"] == "private, max-age=86400"


def test_blinding_holds_with_the_redirect(client, reader, other_reader, setting, accel, django_user_model):
    client.force_login(reader)
    _, _, theirs = _mine(setting, other_reader)
    _, _, case2 = _mine(setting, reader, 2)
    # another reader's keys, the next case's keys at this case, an image id, a case beyond the next
    for url in [_url(setting, 1, c.key) for c in theirs + case2] + [
        _url(setting, 1, str(case2[0].image_id)),
        _url(setting, 3, "query"),
    ]:
        response = client.get(url)
        assert response.status_code == 404 and not response.has_header("X-Accel-Redirect"), url
    # the same query image for two readers: two unrelated validators, and the one file behind both
    mine = client.get(_url(setting, 1, "query"))
    case = _mine(setting, reader)[1]
    theirs_order = selectors.reader_order(assignment=Assignment.objects.get(study=setting, reader=other_reader))
    index = theirs_order.case_ids.index(case.pk) + 1
    for earlier in range(1, index):
        _answer(setting, other_reader, earlier)
    client.force_login(other_reader)
    other = client.get(_url(setting, index, "query"))
    assert mine["X-Accel-Redirect"] == other["X-Accel-Redirect"] and mine["ETag"] != other["ETag"]
    stranger = django_user_model.objects.create_user(username="stranger")
    user_set_roles(user=stranger, roles=[READER])
    client.force_login(stranger)
    response = client.get(_url(setting, 1, "query"))
    assert response.status_code == 404 and not response.has_header("X-Accel-Redirect")


@pytest.mark.parametrize("persona,expected", [("anonymous", 302), ("nobody", 403), ("researcher", 404)])
def test_refused_without_a_redirect(client, request, setting, reader, accel, persona, expected):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    key = _mine(setting, reader)[2][0].key
    for url in (_url(setting, 1, "query"), _url(setting, 1, key)):
        response = client.get(url)
        assert response.status_code == expected and not response.has_header("X-Accel-Redirect")


def test_revisits_of_answered_cases_are_redirected_too(client, reader, setting, accel):
    client.force_login(reader)
    _answer(setting, reader, 1)
    _answer(setting, reader, 2)
    for index in (1, 2, 3):
        assert client.get(_url(setting, index, "query")).has_header("X-Accel-Redirect")


def test_without_the_setting_django_sends_the_bytes(client, reader, setting, settings):
    settings.IMAGE_ACCEL_REDIRECT = ""
    client.force_login(reader)
    _, case, _ = _mine(setting, reader)
    response = client.get(_url(setting, 1, "query"))
    assert not response.has_header("X-Accel-Redirect")
    assert _body(response) == case.query.rendition.open("rb").read()


@pytest.mark.parametrize("value", ["protected-media/", "/protected-media", "/"])
def test_a_malformed_prefix_stops_start_up(tmp_path, value):
    env = {**os.environ, "DEBUG": "true", "DATA_DIR": str(tmp_path), "IMAGE_ACCEL_REDIRECT": value}
    result = subprocess.run([sys.executable, "-c", "import config.settings"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "IMAGE_ACCEL_REDIRECT must be a path like /protected-media/" in result.stderr


def test_a_prefix_with_images_in_a_bucket_stops_start_up(tmp_path):
    """nginx sends files from MEDIA_ROOT: with the images in an S3 bucket the redirect would find nothing."""
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATA_DIR": str(tmp_path),
        "IMAGE_ACCEL_REDIRECT": "/protected-media/",
        "MEDIA_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": "cbir",
    }
    result = subprocess.run([sys.executable, "-c", "import config.settings"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "IMAGE_ACCEL_REDIRECT needs MEDIA_STORAGE=local" in result.stderr


def test_modality_values_are_redirected_like_renditions(client, reader, setting, accel):
    """A DICOM image's 16-bit values (the viewer's HU source) go to nginx the same way, under their own name."""
    client.force_login(reader)
    _, case, _ = _mine(setting, reader)
    query = case.query
    query.values = default_storage.save(
        f"datasets/{query.dataset_id}/values/{query.content_hash[:2]}/{query.content_hash}.png", ContentFile(b"16")
    )
    query.save(update_fields=["values"])
    response = client.get(f"/read/{setting.pk}/case/1/values/query.png")
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == PREFIX + query.values.name
    assert response["Content-Disposition"] == 'inline; filename="values.png"'
    key = _mine(setting, reader)[2][0].key  # a candidate without values: nothing to redirect to
    response = client.get(f"/read/{setting.pk}/case/1/values/{key}.png")
    assert response.status_code == 404 and not response.has_header("X-Accel-Redirect")
