"""Issue 12, finding 10 (the write side): a coordinator who is also one of a study's readers cannot manage it
while assigned. Every study write endpoint of the API answered with the study, `builder_config` (provenance)
included, and the coordinator pages' clone led to a copy with the same cases and provenance; all are 403 now,
and nothing changes. Unassigned coordinators keep them; once the study is closed the reader gets them back."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.roles import COORDINATOR, READER, user_set_roles
from readerstudy.models import Study, StudyStatus
from readerstudy.selectors import BLINDED_MESSAGE
from tests.reading.factories import study_make


@pytest.fixture
def coord_reader(django_user_model):
    user = django_user_model.objects.create_user(username="coord_reader", password="pw")
    user_set_roles(user=user, roles=[COORDINATOR, READER])
    return user


@pytest.fixture
def study(coord_reader, other_reader):
    return study_make(readers=[coord_reader, other_reader], status=StudyStatus.OPEN, n_cases=2, n_candidates=3)


def _api_writes(study, other_reader):
    s = study.pk
    question = study.questions.first()
    writes = [
        ("patch", f"/api/studies/{s}/update/", {"name": "renamed"}),
        ("post", f"/api/studies/{s}/build/", {"builder": "stratified_random", "n_queries": 1, "n": 2}),
        ("post", f"/api/studies/{s}/open/", None),
        ("post", f"/api/studies/{s}/close/", None),
        ("post", f"/api/studies/{s}/clone/", {"name": "copy"}),
        ("post", f"/api/studies/{s}/readers/", {"reader": other_reader.pk}),
        ("delete", f"/api/studies/{s}/readers/{other_reader.pk}/", None),
        ("post", f"/api/studies/{s}/questions/", {"text": "Q?", "choices": ["a", "b"]}),
    ]
    if question is not None:
        writes.append(("delete", f"/api/studies/{s}/questions/{question.pk}/", None))
    return writes


def _page_writes(study, other_reader):
    s = study.pk
    return [
        f"/studies/{s}/edit/",
        f"/studies/{s}/open/",
        f"/studies/{s}/close/",
        f"/studies/{s}/clone/",
        f"/studies/{s}/readers/add/",
        f"/studies/{s}/readers/{other_reader.pk}/remove/",
        f"/studies/{s}/questions/add/",
        f"/studies/{s}/case-list/",
    ]


def _snapshot(study):
    study = Study.objects.get(pk=study.pk)
    return (
        study.name,
        study.status,
        study.builder_config,
        list(study.assignments.values_list("reader_id", flat=True).order_by("reader_id")),
        list(study.questions.values_list("pk", flat=True)),
        Study.objects.count(),
    )


def test_an_assigned_coordinator_cannot_use_the_study_write_api(client, coord_reader, other_reader, study):
    before = _snapshot(study)
    client.force_login(coord_reader)
    for method, url, body in _api_writes(study, other_reader):
        kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == 403, (method, url, response.status_code)
        assert response.json()["detail"] == BLINDED_MESSAGE and "builder_config" not in response.content.decode()
    upload = SimpleUploadedFile("cases.csv", b"query,candidate\n1,2\n", content_type="text/csv")
    response = client.post(f"/api/studies/{study.pk}/case-list/", {"file": upload})
    assert response.status_code == 403
    assert _snapshot(study) == before


def test_an_assigned_coordinator_cannot_use_the_study_pages_either(client, coord_reader, other_reader, study):
    before = _snapshot(study)
    client.force_login(coord_reader)
    assert client.get(f"/studies/{study.pk}/edit/").status_code == 403
    for url in _page_writes(study, other_reader):
        response = client.post(url, {"name": "copy", "reader": other_reader.pk, "text": "Q?", "choices": "a, b"})
        assert response.status_code == 403, (url, response.status_code)
    assert _snapshot(study) == before


def test_unassigned_coordinators_and_closed_studies_are_unaffected(client, coordinator, coord_reader, study):
    client.force_login(coordinator)
    response = client.patch(
        f"/api/studies/{study.pk}/update/", data=json.dumps({"name": "renamed"}), content_type="application/json"
    )
    assert response.status_code == 200 and "builder_config" in response.json()
    study.status = StudyStatus.CLOSED
    study.save(update_fields=["status"])
    client.force_login(coord_reader)
    response = client.post(f"/api/studies/{study.pk}/clone/", data={"name": "after"}, content_type="application/json")
    assert response.status_code == 201


def test_the_admin_hides_a_study_from_its_assigned_coordinator(client, coordinator, coord_reader, study):
    case = study.cases.first()
    pages = [
        f"/admin/readerstudy/study/{study.pk}/change/",
        f"/admin/readerstudy/case/{case.pk}/change/",
    ]
    client.force_login(coord_reader)
    for url in pages:
        response = client.get(url)
        assert response.status_code in (302, 404), (url, response.status_code)  # "doesn't exist": back to the list
    listing = client.get("/admin/readerstudy/case/").content.decode()
    assert f"/admin/readerstudy/case/{case.pk}/change/" not in listing
    client.force_login(coordinator)  # an unassigned coordinator still sees it
    for url in pages:
        assert client.get(url).status_code == 200, url
