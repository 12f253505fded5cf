"""Coordinator pages through Django's test client: wizard, review, dashboard, edit, messages."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from readerstudy.models import Case, Study
from retrieval.models import Dataset
from tests.studies.factories import answer, make_images

pytestmark = pytest.mark.django_db


def wizard_data(dataset, readers, **overrides):
    data = {
        "name": "Effusion ranking",
        "instructions": "Rank by similarity.",
        "dataset": dataset.pk,
        "mode": "choose_k",
        "k": 5,
        "rating_min": 1,
        "rating_max": 5,
        "untouched_ranking": "warn",
        "builder": "stratified_random",
        "seed": 1234,
        "n_queries": 4,
        "query_part": "test",
        "pool_part": "all",
        "exclude_queries": "on",
        "catalogue_size": 10,
        "class_label": "finding",
        "allocation": "proportional",
        "nearest_k": 5,
        "per_method": 5,
        "readers": [r.pk for r in readers],
        "ground_truth_reader": "",
        "q-TOTAL_FORMS": 2,
        "q-INITIAL_FORMS": 0,
        "q-MIN_NUM_FORMS": 0,
        "q-MAX_NUM_FORMS": 20,
        "q-0-text": "Pleural effusion?",
        "q-0-choices": "yes, no, unsure",
        "q-0-applies_to": "all",
        "q-1-text": "",
        "q-1-choices": "yes, no",
        "q-1-applies_to": "all",
    }
    return {**data, **overrides}


def test_empty_list_invites_the_coordinator(client, coordinator, researcher):
    client.force_login(coordinator)
    html = client.get("/studies/").content.decode()
    assert "No reader study yet" in html and 'href="/studies/new/"' in html
    client.force_login(researcher)
    html = client.get("/studies/").content.decode()
    assert "No reader study yet" in html and "/studies/new/" not in html


def test_wizard_has_every_section_and_a_seed(client, coordinator, dataset, images):
    client.force_login(coordinator)
    response = client.get("/studies/new/")
    html = response.content.decode()
    for title in (
        "1. Basics",
        "2. Dataset and answer mode",
        "3. Cases: builder, sizes and seed",
        "4. Readers",
        "5. Questions",
        "6. Review and create",
    ):
        assert title in html, title
    assert response.context["form"].initial["seed"] >= 0
    assert '"finding"' in html  # the dataset's label names for the class choice
    assert 'data-builders="knn_farthest top_n"' in html


def test_review_builds_nothing_then_create_saves_everything(client, coordinator, dataset, images, reader, other_reader):
    client.force_login(coordinator)
    response = client.post("/studies/new/", {**wizard_data(dataset, [reader, other_reader]), "review": "1"})
    assert response.status_code == 200
    summary = response.context["summary"]
    assert (summary["n_cases"], summary["catalogue_min"], summary["readers"]) == (4, 10, ["reader", "other_reader"])
    assert "This study would hold" in response.content.decode()
    assert not Study.objects.exists() and not Case.objects.exists()

    response = client.post("/studies/new/", {**wizard_data(dataset, [reader, other_reader]), "create": "1"})
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/studies/{study.pk}/"
    assert (study.mode, study.k, study.seed, study.builder, study.created_by) == (
        "choose_k",
        5,
        1234,
        "stratified_random",
        coordinator,
    )
    assert study.cases.count() == 4 and study.assignments.count() == 2
    assert list(study.questions.values_list("text", "choices")) == [("Pleural effusion?", ["yes", "no", "unsure"])]


def test_same_seed_in_review_and_create_gives_the_same_first_case(client, coordinator, dataset, images, reader):
    client.force_login(coordinator)
    review = client.post("/studies/new/", {**wizard_data(dataset, [reader]), "review": "1"}).context["summary"]
    client.post("/studies/new/", wizard_data(dataset, [reader]))
    first = Study.objects.get().cases.order_by("position").first()
    assert first.query_id == review["example_query"]
    assert [c.image_id for c in first.candidates.order_by("position")] == [i for i, _ in review["example_candidates"]]


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"builder": "knn_farthest"}, "run", "This builder ranks with a model run"),
        ({"class_label": ""}, "class_label", "needs the label"),
        ({"mode": "choose_k", "k": ""}, "k", "Choose k needs k"),
        ({"builder": "case_list"}, "case_list", "Choose the case-list CSV file"),
        ({"name": ""}, "name", "This field is required"),
    ],
)
def test_wizard_field_errors(client, coordinator, dataset, images, reader, overrides, field, message):
    client.force_login(coordinator)
    response = client.post("/studies/new/", wizard_data(dataset, [reader], **overrides))
    assert response.status_code == 200
    assert any(message in e for e in response.context["form"].errors[field])
    assert not Study.objects.exists()


def test_wizard_shows_the_service_message_and_writes_nothing(client, coordinator, dataset, images, reader):
    client.force_login(coordinator)
    response = client.post("/studies/new/", wizard_data(dataset, [reader], n_queries=41))
    assert response.status_code == 200
    assert "Asked for 41 queries but the query pool has only 40 images." in response.content.decode()
    assert not Study.objects.exists()


def test_wizard_refuses_a_run_of_another_dataset(client, coordinator, dataset, images, run, reader):
    other = Dataset.objects.create(name="Other")
    make_images(other, ["a"] * 12)
    client.force_login(coordinator)
    response = client.post("/studies/new/", wizard_data(other, [reader], builder="knn_farthest", run=run.pk))
    assert "This run belongs to another dataset." in response.context["form"].errors["run"]


def test_wizard_builds_knn_farthest_with_a_run(client, coordinator, dataset, images, run, reader):
    client.force_login(coordinator)
    client.post("/studies/new/", wizard_data(dataset, [reader], builder="knn_farthest", run=run.pk, nearest_k=5))
    study = Study.objects.get()
    assert study.builder_config["run"] == run.pk and study.cases.count() == 4
    sets = [c.provenance[0]["set"] for c in study.cases.first().candidates.all()]
    assert sorted(sets) == ["farthest"] * 5 + ["nearest"] * 5


def test_wizard_with_a_case_list(client, coordinator, dataset, images, reader):
    client.force_login(coordinator)
    csv = "query,candidate\n" + "".join(f"img/000.png,img/{n:03d}.png\n" for n in range(1, 11))
    data = wizard_data(dataset, [reader], builder="case_list", case_list=SimpleUploadedFile("cases.csv", csv.encode()))
    response = client.post("/studies/new/", data)
    assert response.status_code == 302
    study = Study.objects.get()
    assert study.builder == "case_list" and study.cases.get().candidates.count() == 10


def test_dashboard_shows_progress_provenance_and_thumbnails(client, coordinator, assigned, reader):
    answer(assigned, reader)
    client.force_login(coordinator)
    html = client.get(f"/studies/{assigned.pk}/").content.decode()
    assert "1/4" in html and "0/4" in html  # per-reader progress
    assert "Readers have answered" in html  # the lock notice
    case = assigned.cases.order_by("position").first()
    assert f"/images/{case.query_id}/thumbnail/" in html
    for cand in case.candidates.all():
        assert f"/images/{cand.image_id}/thumbnail/" in html
    assert "random" in html and "[effusion]" in html and "[normal]" in html


def test_refused_action_shows_the_reason(client, coordinator, study):
    client.force_login(coordinator)
    response = client.post(f"/studies/{study.pk}/open/", follow=True)
    assert "The study has no readers yet: assign at least one reader first." in response.content.decode()
    assert Study.objects.get().status == "draft"


def test_bad_case_list_upload_lists_the_lines(client, coordinator, study):
    client.force_login(coordinator)
    upload = SimpleUploadedFile("c.csv", b"query,candidate\nimg/000.png,missing.png\n")
    response = client.post(f"/studies/{study.pk}/case-list/", {"case_list": upload}, follow=True)
    assert "line 2: no image &#x27;missing.png&#x27; in the dataset" in response.content.decode()


def test_edit_page_locks_design_fields_after_answers(client, coordinator, assigned, reader):
    answer(assigned, reader)
    client.force_login(coordinator)
    form = client.get(f"/studies/{assigned.pk}/edit/").context["form"]
    assert form.fields["mode"].disabled and form.fields["k"].disabled and not form.fields["name"].disabled
    response = client.post(
        f"/studies/{assigned.pk}/edit/",
        {
            "name": "New name",
            "instructions": "x",
            "mode": "rate",
            "k": 2,
            "rating_min": 1,
            "rating_max": 5,
            "untouched_ranking": "refuse",
        },
    )
    assert response.status_code == 302
    study = Study.objects.get()
    # The untouched-ranking policy stays editable: it changes what a reader may submit next, not the past.
    assert (study.name, study.mode, study.k, study.untouched_ranking) == ("New name", "choose_k", 5, "refuse")


def test_edit_shows_the_service_refusal(client, coordinator, study):
    client.force_login(coordinator)
    response = client.post(
        f"/studies/{study.pk}/edit/",
        {
            "name": study.name,
            "mode": "choose_k",
            "k": 10,
            "rating_min": 1,
            "rating_max": 5,
            "untouched_ranking": "warn",
        },
    )
    assert response.status_code == 200
    assert "Choose 10 needs catalogues of more than 10 candidates" in response.content.decode()
