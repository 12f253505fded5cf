"""Who may use every reader page and reading endpoint: each persona, anonymous included."""

from __future__ import annotations

import pytest

from annotations.models import Answer, CaseFlag, CaseVisit
from readerstudy.models import StudyStatus
from retrieval.models import Image
from tests.reading.factories import assign, study_make

PAGES = ["/read/{s}/", "/read/{s}/start/", "/read/{s}/case/1/", "/read/{s}/done/", "/read/{s}/closed/"]
API = [
    ("get", "/api/reading/studies/{s}/cases/1/"),
    ("put", "/api/reading/studies/{s}/cases/1/draft/"),
    ("post", "/api/reading/studies/{s}/cases/1/answer/"),
    ("post", "/api/reading/studies/{s}/cases/1/heartbeat/"),
    ("post", "/api/reading/studies/{s}/cases/1/flag/"),
    ("post", "/api/reading/studies/{s}/cases/1/flag/clear/"),
]
BODY = {"client_token": "token-perm-1", "selected": [], "active_ms_delta": 1, "comment": "x"}


@pytest.fixture
def setting(reader, other_reader):
    """`study` assigned to reader only; other_reader reads another study."""
    study = study_make(readers=[reader], n_cases=2, n_candidates=3)
    study_make(readers=[other_reader], n_cases=1, n_candidates=2)
    return study


def _login(client, request, persona):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    "persona,expected",
    [
        ("anonymous", 302),
        ("nobody", 403),
        ("researcher", 404),
        ("coordinator", 404),
        ("other_reader", 404),
    ],
)
def test_pages_refused(client, request, setting, persona, expected, page):
    _login(client, request, persona)
    response = client.get(page.format(s=setting.pk))
    assert response.status_code == expected
    if persona == "anonymous":
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("method,path", API)
@pytest.mark.parametrize(
    "persona,expected",
    [
        ("anonymous", 403),
        ("nobody", 403),
        ("researcher", 404),
        ("coordinator", 404),
        ("other_reader", 404),
    ],
)
def test_api_refused(client, request, setting, persona, expected, method, path):
    _login(client, request, persona)
    response = getattr(client, method)(path.format(s=setting.pk), BODY, content_type="application/json")
    assert response.status_code == expected
    assert not Answer.objects.exists() and not CaseFlag.objects.exists() and not CaseVisit.objects.exists()


@pytest.mark.parametrize(
    "persona,expected",
    [("anonymous", 302), ("nobody", 403), ("researcher", 200), ("coordinator", 200), ("reader", 200)],
)
def test_my_studies_page(client, request, setting, persona, expected):
    _login(client, request, persona)
    response = client.get("/read/")
    assert response.status_code == expected
    if expected == 200:
        assert (setting.name in response.content.decode()) == (persona == "reader")


@pytest.mark.parametrize(
    "persona,expected",
    [("anonymous", 403), ("nobody", 403), ("researcher", 200), ("coordinator", 200), ("other_reader", 200)],
)
def test_my_studies_api_lists_only_own(client, request, setting, persona, expected):
    _login(client, request, persona)
    response = client.get("/api/reading/studies/")
    assert response.status_code == expected
    if expected == 200:
        assert setting.pk not in [s["id"] for s in response.json()]


def test_assigned_reader_passes_every_check(client, reader, setting):
    client.force_login(reader)
    assert client.get(f"/read/{setting.pk}/").status_code == 200
    assert client.get(f"/read/{setting.pk}/case/1/").status_code == 200
    assert client.get(f"/api/reading/studies/{setting.pk}/cases/1/").status_code == 200
    assert (
        client.post(
            f"/api/reading/studies/{setting.pk}/cases/1/heartbeat/",
            {"active_ms_delta": 1},
            content_type="application/json",
        ).status_code
        == 200
    )


def test_assigned_coordinator_can_read(client, coordinator, setting):
    assign(setting, coordinator)
    client.force_login(coordinator)
    assert client.get(f"/read/{setting.pk}/case/1/").status_code == 200
    assert client.get(f"/api/reading/studies/{setting.pk}/cases/1/").status_code == 200


def test_assigned_user_without_role_cannot_read(client, nobody, setting):
    assign(setting, nobody)
    client.force_login(nobody)
    assert client.get(f"/read/{setting.pk}/case/1/").status_code == 403
    assert client.get(f"/api/reading/studies/{setting.pk}/cases/1/").status_code == 403


def test_api_needs_csrf_with_session_auth(reader, setting):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    response = client.post(
        f"/api/reading/studies/{setting.pk}/cases/1/heartbeat/", {"active_ms_delta": 1}, content_type="application/json"
    )
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


# --- images -------------------------------------------------------------------------------------


def _image_of(study):
    return study.cases.first().candidates.first().image_id


@pytest.mark.parametrize("status", [StudyStatus.OPEN, StudyStatus.CLOSED, StudyStatus.DRAFT])
def test_readers_get_no_image_by_its_id_even_of_their_own_studies(client, reader, setting, status):
    """Readers load their cases' images by case number and key (tests/reading/test_images.py)."""
    setting.status = status
    setting.save()
    client.force_login(reader)
    for kind in ("rendition", "thumbnail", "original"):
        assert client.get(f"/images/{_image_of(setting)}/{kind}/").status_code == 404
        assert client.get(f"/images/{setting.cases.first().query_id}/{kind}/").status_code == 404


def test_reader_cannot_see_other_images(client, reader, other_reader, setting):
    client.force_login(other_reader)
    assert client.get(f"/images/{_image_of(setting)}/rendition/").status_code == 404
    client.force_login(reader)
    stray = (
        Image.objects.exclude(pk__in=setting.cases.values("query_id"))
        .exclude(pk__in=setting.cases.values("candidates__image_id"))
        .first()
    )
    assert client.get(f"/images/{stray.pk}/rendition/").status_code == 404
    assert client.get(f"/images/{_image_of(setting)}/original/").status_code == 404


@pytest.mark.parametrize("persona", ["coordinator", "researcher"])
def test_coordinators_and_researchers_still_get_images_by_id(client, request, setting, persona):
    _login(client, request, persona)
    assert client.get(f"/images/{_image_of(setting)}/rendition/").status_code == 200
    assert client.get(f"/images/{setting.cases.first().query_id}/thumbnail/").status_code == 200
