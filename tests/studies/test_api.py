"""The study API: a whole study through the endpoints, clear 4xx answers, provenance for coordinators."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from readerstudy.models import Study
from tests.studies.factories import answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, coordinator):
    client.force_login(coordinator)
    return client


def post(client, url, body=None):
    return client.post(url, body or {}, content_type="application/json")


def test_a_study_from_start_to_open_through_the_api(api, dataset, images, run, reader, other_reader):
    created = post(
        api,
        "/api/studies/create/",
        {
            "name": "Paper 000",
            "dataset": dataset.pk,
            "mode": "choose_k",
            "k": 5,
            "seed": 11,
            "instructions": "Pick the 5 most similar.",
        },
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    built = post(api, f"/api/studies/{pk}/build/", {"builder": "knn_farthest", "n_queries": 3, "run": run.pk, "k": 5})
    assert built.status_code == 200, built.content
    assert built.json()["n_cases"] == 3 and built.json()["builder_config"]["run"] == run.pk
    for user in (reader, other_reader):
        added = post(api, f"/api/studies/{pk}/readers/", {"reader": user.pk})
        assert added.status_code == 201 and added.json()["username"] == user.username
    assert (
        post(api, f"/api/studies/{pk}/questions/", {"text": "Effusion?", "choices": ["yes", "no"]}).status_code == 201
    )
    opened = post(api, f"/api/studies/{pk}/open/")
    assert opened.status_code == 200 and opened.json()["status"] == "open"
    detail = api.get(f"/api/studies/{pk}/").json()
    assert [r["username"] for r in detail["readers"]] == ["reader", "other_reader"]
    assert detail["questions"][0]["key"] == "effusion" and detail["locked"] is False
    progress = api.get(f"/api/studies/{pk}/progress/").json()
    assert progress["n_cases"] == 3 and {r["reader"] for r in progress["readers"]} == {"reader", "other_reader"}
    assert all(r["done"] == 0 and r["total"] == 3 for r in progress["readers"])


def test_cases_endpoint_gives_provenance_to_coordinators_and_researchers(client, study, researcher):
    client.force_login(researcher)
    data = client.get(f"/api/studies/{study.pk}/cases/?limit=2").json()
    assert data["count"] == 4 and len(data["results"]) == 2
    candidate = data["results"][0]["candidates"][0]
    assert candidate["provenance"][0]["method"] == "random" and "stratum" in candidate["provenance"][0]
    assert [c["position"] for c in data["results"][0]["candidates"]] == list(range(10))


def test_locked_changes_answer_409_with_the_reason(api, assigned, reader):
    answer(assigned, reader)
    pk = assigned.pk
    response = api.patch(f"/api/studies/{pk}/update/", {"mode": "rank_all"}, content_type="application/json")
    assert response.status_code == 409 and "already has answers" in response.json()["detail"]
    response = post(
        api, f"/api/studies/{pk}/build/", {"builder": "stratified_random", "n_queries": 2, "class_label": "finding"}
    )
    assert response.status_code == 409 and "rebuilding the cases" in response.json()["detail"]
    response = api.delete(f"/api/studies/{pk}/readers/{reader.pk}/")
    assert response.status_code == 409 and "has already answered" in response.json()["detail"]
    assert api.get(f"/api/studies/{pk}/").json()["locked"] is True
    renamed = api.patch(f"/api/studies/{pk}/update/", {"name": "Still editable"}, content_type="application/json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Still editable"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"builder": "knn_farthest", "n_queries": 2}, "needs 'run'"),
        ({"builder": "knn_farthest", "n_queries": 2, "run": 9999}, "Model run 9999 does not exist"),
        (
            {"builder": "stratified_random", "n_queries": 2, "class_label": "finding", "runs": [1]},
            "Unknown option(s) for stratified_random: runs",
        ),
    ],
)
def test_bad_builds_answer_400_with_a_message(api, study, body, message):
    response = post(api, f"/api/studies/{study.pk}/build/", body)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_serializer_errors_are_400(api, dataset):
    response = post(api, "/api/studies/create/", {"name": "", "dataset": 9999, "mode": "guess"})
    assert response.status_code == 400 and set(response.json()) >= {"name", "dataset", "mode"}


def test_case_list_upload_reports_each_bad_line(api, study):
    csv = b"query,candidate,position\nnope.png,img/001.png,1\nimg/000.png,img/001.png,x\n"
    response = api.post(f"/api/studies/{study.pk}/case-list/", {"file": SimpleUploadedFile("c.csv", csv)})
    assert response.status_code == 400
    assert response.json()["extra"]["errors"] == ["line 3: position 'x' is not a whole number"]
    assert Study.objects.get(pk=study.pk).cases.count() == 4  # untouched


def test_clone_through_the_api(api, study):
    response = post(api, f"/api/studies/{study.pk}/clone/", {"name": "Again"})
    assert response.status_code == 201 and response.json()["n_cases"] == 4 and response.json()["readers"] == []
    assert post(api, f"/api/studies/{study.pk}/clone/", {"name": "Again"}).status_code == 400


def test_open_without_readers_is_refused_with_a_message(api, study):
    response = post(api, f"/api/studies/{study.pk}/open/")
    assert response.status_code == 400 and "no readers yet" in response.json()["detail"]


def test_schema_lists_the_study_endpoints(tmp_path, db):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--fail-on-warn", "--validate")
    text = out.read_text()
    for path in (
        "/api/studies/",
        "/api/studies/{id}/build/",
        "/api/studies/{id}/readers/{user_id}/",
        "/api/studies/{id}/progress/",
        "CandidateProvenance:",
        "StudyDetail:",
    ):
        assert path in text, path
