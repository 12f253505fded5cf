"""The reader's images: `/read/<study>/case/<n>/image/<"query" | candidate key>.png`, never by image id."""

from __future__ import annotations

import json
import re

import pytest

from annotations import selectors, services
from readerstudy.models import Assignment, StudyStatus
from tests.reading.factories import answer_payload, assign, study_make


@pytest.fixture
def setting(reader, other_reader):
    """Open, 3 cases of 3 candidates, assigned to reader and other_reader."""
    return study_make(readers=[reader, other_reader], n_cases=3, n_candidates=3)


def _url(study, index, key):
    return f"/read/{study.pk}/case/{index}/image/{key}.png"


def _mine(study, user, index=1):
    assignment = Assignment.objects.get(study=study, reader=user)
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=index)
    return assignment, case, selectors.reader_candidates(assignment=assignment, case=case)


def _answer(study, user, index):
    assignment, case, _ = _mine(study, user, index)
    services.answer_submit(
        assignment=assignment,
        case=case,
        payload=answer_payload(study, case),
        client_token=f"token-img-{user.pk}-{index}",
    )


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_query_and_candidates_are_served_by_key(client, reader, setting):
    client.force_login(reader)
    _, case, candidates = _mine(setting, reader)
    response = client.get(_url(setting, 1, "query"))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert _body(response) == case.query.rendition.open("rb").read()
    assert response["Content-Disposition"] == 'inline; filename="query.png"'
    for c in candidates:
        response = client.get(_url(setting, 1, c.key))
        assert response.status_code == 200
        assert _body(response) == c.image.rendition.open("rb").read()
        assert response["Content-Disposition"] == 'inline; filename="candidate.png"'


def _path(url: str) -> str:
    return url.split("?")[0]


def test_payload_and_prefetch_use_these_addresses(client, reader, setting):
    client.force_login(reader)
    _, _, candidates = _mine(setting, reader)
    payload = client.get(f"/api/reading/studies/{setting.pk}/cases/1/").json()
    assert _path(payload["query"]["url"]) == _url(setting, 1, "query")
    assert [_path(c["url"]) for c in payload["candidates"]] == [_url(setting, 1, c.key) for c in candidates]
    assert all("?v=" in u for u in [payload["query"]["url"], *(c["url"] for c in payload["candidates"])])
    html = client.get(f"/read/{setting.pk}/case/1/").content.decode()
    _, _, following = _mine(setting, reader, 2)
    handed = json.loads(re.search(r'<script id="prefetch-data" type="application/json">(.*?)</script>', html, re.S)[1])
    # Handed to reader.js, fetched once case 1 is painted, at the immutable addresses case 2's page will use.
    assert [_path(u) for u in handed] == [_url(setting, 2, "query")] + [_url(setting, 2, c.key) for c in following]
    for url in handed:
        response = client.get(url)
        assert response.status_code == 200 and response["Cache-Control"] == "private, max-age=31536000, immutable"
    _answer(setting, reader, 1)
    page2 = client.get(f"/api/reading/studies/{setting.pk}/cases/2/").json()
    assert [page2["query"]["url"], *(c["url"] for c in page2["candidates"])] == handed


def test_versioned_addresses_are_immutable_and_stale_ones_revalidated(client, reader, other_reader, setting):
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{setting.pk}/cases/1/").json()
    query = payload["query"]["url"]
    assert client.get(query)["Cache-Control"] == "private, max-age=31536000, immutable"
    stale = _path(query) + "?v=0123456789abcdef0123456789abcdef"
    response = client.get(stale)  # still served (the current bytes), but the browser must ask again next time
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-cache"
    assert client.get(_path(query))["Cache-Control"] == "private, no-cache"  # the query, unversioned
    candidate = payload["candidates"][0]["url"]
    assert client.get(_path(candidate))["Cache-Control"] == "private, max-age=86400"
    # The version is the file's ETag for this reader and place: another reader's address of the same image
    # differs (a shared version would tell which candidates recur across readers' cases).
    client.force_login(other_reader)
    other = client.get(f"/api/reading/studies/{setting.pk}/cases/1/").json()
    mine_v = {u.split("v=")[1] for u in [query, *(c["url"] for c in payload["candidates"])]}
    other_v = {u.split("v=")[1] for u in [other["query"]["url"], *(c["url"] for c in other["candidates"])]}
    assert not mine_v & other_v


def test_cases_beyond_the_next_one_are_not_served(client, reader, setting):
    client.force_login(reader)
    assert client.get(_url(setting, 2, "query")).status_code == 200  # prefetched by case 1's page
    assert client.get(_url(setting, 3, "query")).status_code == 404
    assert client.get(_url(setting, 4, "query")).status_code == 404
    assert client.get(_url(setting, 0, "query")).status_code == 404
    _answer(setting, reader, 1)
    assert client.get(_url(setting, 1, "query")).status_code == 200  # answered: may be revisited
    assert client.get(_url(setting, 3, "query")).status_code == 200


def test_keys_of_another_case_or_reader_name_nothing(client, reader, other_reader, setting):
    client.force_login(reader)
    _, _, theirs = _mine(setting, other_reader)
    _, _, case2 = _mine(setting, reader, 2)
    for key in [c.key for c in theirs] + [c.key for c in case2] + ["0123456789abcdef", "Query"]:
        assert client.get(_url(setting, 1, key)).status_code == 404
    candidate = _mine(setting, reader)[2][0]
    assert client.get(f"/read/{setting.pk}/case/1/image/{candidate.image_id}.png").status_code == 404


@pytest.mark.parametrize(
    "persona,expected",
    [
        ("anonymous", 302),
        ("nobody", 403),
        ("researcher", 404),
        ("coordinator", 404),
        ("unassigned_reader", 404),
    ],
)
def test_refused_to_anyone_not_assigned(client, request, django_user_model, setting, reader, persona, expected):
    _, _, candidates = _mine(setting, reader)
    if persona == "unassigned_reader":
        user = django_user_model.objects.create_user(username="stranger")
        from core.roles import READER, user_set_roles

        user_set_roles(user=user, roles=[READER])
        client.force_login(user)
    elif persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    for key in ("query", candidates[0].key):
        response = client.get(_url(setting, 1, key))
        assert response.status_code == expected
        if persona == "anonymous":
            assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "status,expected", [(StudyStatus.OPEN, 200), (StudyStatus.CLOSED, 200), (StudyStatus.DRAFT, 404)]
)
def test_open_and_closed_studies_only(client, reader, setting, status, expected):
    key = _mine(setting, reader)[2][0].key
    setting.status = status
    setting.save()
    client.force_login(reader)
    assert client.get(_url(setting, 1, "query")).status_code == expected
    assert client.get(_url(setting, 1, key)).status_code == expected


def test_an_assigned_coordinator_reads_like_a_reader(client, coordinator, setting):
    assignment = assign(setting, coordinator)
    client.force_login(coordinator)
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=1)
    key = selectors.reader_candidates(assignment=assignment, case=case)[0].key
    assert client.get(_url(setting, 1, key)).status_code == 200


def test_query_is_revalidated_and_candidates_cached(client, reader, setting):
    client.force_login(reader)
    key = _mine(setting, reader)[2][0].key
    query = client.get(_url(setting, 1, "query"))
    assert query["Cache-Control"] == "private, no-cache"  # case n's query changes if the study is rebuilt
    assert client.get(_url(setting, 1, key))["Cache-Control"] == "private, max-age=86400"
    again = client.get(_url(setting, 1, "query"), HTTP_IF_NONE_MATCH=query["ETag"])
    assert again.status_code == 304 and again["ETag"] == query["ETag"]
    assert client.get(_url(setting, 1, "query"), HTTP_IF_NONE_MATCH='"stale"').status_code == 200
    other = client.get(_url(setting, 2, "query"))
    assert other["ETag"] != query["ETag"]
