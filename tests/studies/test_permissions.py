"""Every coordinator page and study endpoint, for every persona: who may read, who may write."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from readerstudy import services
from readerstudy.models import Assignment, Study, StudyQuestion

pytestmark = pytest.mark.django_db

ALL = ["anonymous", "nobody", "reader", "other_reader", "researcher", "coordinator"]
NO_ROLE_HERE = ["nobody", "reader", "other_reader"]


@pytest.fixture
def world(assigned, reader, other_reader, coordinator, researcher, nobody, django_user_model):
    """A study with two readers and a question, a third reader not assigned yet; every persona exists."""
    from core.roles import READER, user_set_roles

    third = django_user_model.objects.create_user("third_reader", password="x")
    user_set_roles(user=third, roles=[READER])
    question = services.question_add(study=assigned, text="Effusion?", choices=["yes", "no"])
    return {"study": assigned, "question": question, "reader": reader, "other_reader": other_reader, "third": third}


def case_list_csv(w) -> bytes:
    ids = list(w["study"].dataset.images.values_list("pk", flat=True)[:12])
    return ("query,candidate\n" + "".join(f"{ids[0]},{i}\n" for i in ids[1:])).encode()


def login(client, persona, request):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    return client


def read_pages(w):
    pk = w["study"].pk
    return ["/studies/", f"/studies/{pk}/", f"/studies/{pk}/?page=2"]


def coordinator_pages(w):
    pk = w["study"].pk
    return ["/studies/new/", f"/studies/{pk}/edit/"]


def actions(w, *, with_wizard: bool = True):
    """(url, POST data) of every coordinator action, with valid data (in an order that succeeds)."""
    pk, q, r = w["study"].pk, w["question"].pk, w["other_reader"].pk
    return [
        (f"/studies/{pk}/case-list/", {"case_list": SimpleUploadedFile("c.csv", case_list_csv(w))}),
        (f"/studies/{pk}/open/", {}),
        (f"/studies/{pk}/close/", {}),
        (f"/studies/{pk}/clone/", {"name": "Cloned"}),
        (f"/studies/{pk}/readers/add/", {"reader": w["third"].pk}),
        (f"/studies/{pk}/readers/{r}/remove/", {}),
        (f"/studies/{pk}/questions/add/", {"text": "Nodule?", "choices": "yes, no", "applies_to": "all"}),
        (f"/studies/{pk}/questions/{q}/remove/", {}),
        (
            f"/studies/{pk}/edit/",
            {
                "name": "Renamed",
                "mode": "choose_k",
                "k": 5,
                "rating_min": 1,
                "rating_max": 5,
                "untouched_ranking": "warn",
            },
        ),
    ] + ([("/studies/new/", {"name": "Wizard"})] if with_wizard else [])


def api_reads(w):
    pk = w["study"].pk
    return ["/api/studies/", f"/api/studies/{pk}/", f"/api/studies/{pk}/cases/", f"/api/studies/{pk}/progress/"]


def api_writes(w):
    """(method, url, JSON body) of every write endpoint."""
    pk, q, r, ds = w["study"].pk, w["question"].pk, w["other_reader"].pk, w["study"].dataset_id
    return [
        ("post", "/api/studies/create/", {"name": "New", "dataset": ds, "mode": "rank_all"}),
        ("patch", f"/api/studies/{pk}/update/", {"name": "Renamed"}),
        (
            "post",
            f"/api/studies/{pk}/build/",
            {"builder": "stratified_random", "n_queries": 2, "class_label": "finding"},
        ),
        ("post", f"/api/studies/{pk}/open/", None),
        ("post", f"/api/studies/{pk}/close/", None),
        ("post", f"/api/studies/{pk}/clone/", {"name": "Copy"}),
        ("post", f"/api/studies/{pk}/readers/", {"reader": w["reader"].pk}),
        ("delete", f"/api/studies/{pk}/readers/{r}/", None),
        ("post", f"/api/studies/{pk}/questions/", {"text": "Nodule?", "choices": ["yes", "no"]}),
        ("delete", f"/api/studies/{pk}/questions/{q}/", None),
        ("post", f"/api/studies/{pk}/case-list/", "multipart"),
    ]


def call(client, method, url, body):
    if body == "multipart":
        return client.post(url, {"file": SimpleUploadedFile("c.csv", b"query,candidate\n1,2\n")})
    return getattr(client, method)(
        url, data=json.dumps(body) if body is not None else None, content_type="application/json"
    )


def snapshot(w):
    study = Study.objects.get(pk=w["study"].pk)
    return (
        Study.objects.count(),
        study.name,
        study.status,
        study.seed,
        Assignment.objects.count(),
        StudyQuestion.objects.count(),
        list(study.cases.values_list("query_id", flat=True)),
    )


# --- anonymous -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_everywhere(client, world):
    before = snapshot(world)
    for url in read_pages(world) + coordinator_pages(world):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    for url, data in actions(world):
        response = client.post(url, data)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    for url in api_reads(world):
        assert client.get(url).status_code in (401, 403), url
    for method, url, body in api_writes(world):
        assert call(client, method, url, body).status_code in (401, 403), url
    assert snapshot(world) == before


# --- readers and users without a role --------------------------------------------------------


@pytest.mark.parametrize("persona", NO_ROLE_HERE)
def test_readers_and_roleless_users_get_nothing(client, world, persona, request):
    login(client, persona, request)
    before = snapshot(world)
    for url in read_pages(world) + coordinator_pages(world):
        assert client.get(url).status_code == 403, url
    for url, data in actions(world):
        assert client.post(url, data).status_code == 403, url
    for url in api_reads(world):
        assert client.get(url).status_code == 403, url
    for method, url, body in api_writes(world):
        assert call(client, method, url, body).status_code == 403, url
    assert snapshot(world) == before


# --- researchers: read-only ------------------------------------------------------------------


def test_researcher_reads_but_cannot_write(client, world, researcher):
    client.force_login(researcher)
    before = snapshot(world)
    for url in read_pages(world) + api_reads(world):
        assert client.get(url).status_code == 200, url
    for url in coordinator_pages(world):
        assert client.get(url).status_code == 403, url
    for url, data in actions(world):
        assert client.post(url, data).status_code == 403, url
    for method, url, body in api_writes(world):
        assert call(client, method, url, body).status_code == 403, url
    assert snapshot(world) == before


def test_researcher_dashboard_shows_no_management_controls(client, world, researcher):
    client.force_login(researcher)
    html = client.get(f"/studies/{world['study'].pk}/").content.decode()
    assert "Readers and progress" in html and "provenance" in html.lower()
    for control in ("/open/", "/clone/", "/readers/add/", "/case-list/", "/edit/", "/remove/"):
        assert control not in html, control
    assert "New study" not in client.get("/studies/").content.decode()


# --- coordinators ----------------------------------------------------------------------------


def test_coordinator_opens_every_page(client, world, coordinator):
    client.force_login(coordinator)
    for url in read_pages(world) + coordinator_pages(world) + api_reads(world):
        assert client.get(url).status_code == 200, url


def test_coordinator_actions_succeed(client, world, coordinator):
    client.force_login(coordinator)
    pk = world["study"].pk
    for url, data in actions(world, with_wizard=False):
        response = client.post(url, data, follow=True)
        assert response.status_code == 200, url
        assert [(m.level_tag, m.message) for m in response.context["messages"]][0][0] == "success", url
    study = Study.objects.get(pk=pk)
    assert study.name == "Renamed" and study.status == "closed" and Study.objects.filter(name="Cloned").exists()
    assert set(study.assignments.values_list("reader__username", flat=True)) == {"reader", "third_reader"}
    assert list(study.questions.values_list("text", flat=True)) == ["Nodule?"]
    assert study.cases.count() == 1 and study.builder == "case_list"


@pytest.mark.parametrize("index", range(11))
def test_coordinator_api_writes_succeed(client, world, coordinator, index):
    client.force_login(coordinator)
    method, url, body = api_writes(world)[index]
    if url.endswith("/close/"):
        services.study_open(study=world["study"])
    if url.endswith("/readers/") and method == "post":
        services.assignment_remove(study=world["study"], reader=world["reader"])
    if body == "multipart":
        response = client.post(url, {"file": SimpleUploadedFile("c.csv", case_list_csv(world))})
    else:
        response = call(client, method, url, body)
    assert response.status_code in (200, 201, 204), (url, response.content)


@pytest.mark.parametrize("method", ["get", "put"])
def test_actions_refuse_get(client, world, coordinator, method):
    client.force_login(coordinator)
    pk = world["study"].pk
    for url in (f"/studies/{pk}/open/", f"/studies/{pk}/close/", f"/studies/{pk}/clone/", f"/studies/{pk}/case-list/"):
        assert getattr(client, method)(url).status_code == 405, url
    assert Study.objects.get(pk=pk).status == "draft"


def test_actions_need_the_csrf_token(world, coordinator):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(coordinator)
    response = client.post(f"/studies/{world['study'].pk}/open/")
    assert response.status_code == 403
    assert Study.objects.get(pk=world["study"].pk).status == "draft"


def test_unknown_ids_are_404(client, world, coordinator):
    client.force_login(coordinator)
    assert client.get("/studies/9999/").status_code == 404
    assert client.get("/api/studies/9999/").status_code == 404
    assert client.post("/studies/9999/open/").status_code == 404
    assert client.post(f"/studies/{world['study'].pk}/readers/9999/remove/").status_code == 404
