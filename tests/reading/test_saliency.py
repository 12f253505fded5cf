"""Saliency overlays for readers: one run per study, served by case number and key, only when the study shows them."""

from __future__ import annotations

import re

import pytest

from annotations import selectors
from readerstudy.models import Assignment, StudyStatus
from readerstudy.selectors import study_saliency_run
from tests.reading.factories import assign, overlay_bytes, saliency_run_make, study_make

RUN_NAME = "cnn-zqxrun"


def _build_from(study, *run_ids, builder: str = "pooled"):
    study.builder = builder
    study.builder_config = {"run": run_ids[0]} if builder != "pooled" else {"runs": list(run_ids)}
    study.save(update_fields=["builder", "builder_config"])
    return study


def _reader_case(study, user, index: int = 1):
    assignment = Assignment.objects.get(study=study, reader=user)
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=index)
    return assignment, case, selectors.reader_candidates(assignment=assignment, case=case)


@pytest.fixture
def sal_study(reader, other_reader):
    """Open, shows saliency, built from one classifier run with overlays of every query and of two
    of each case's four candidates (candidates 0 and 1 of the canonical order)."""
    study = study_make(readers=[reader, other_reader], n_cases=2, n_candidates=4, show_saliency=True)
    with_map = [c.query_id for c in study.cases.all()] + [
        cand.image_id for case in study.cases.all() for cand in case.candidates.filter(position__lt=2)
    ]
    run = saliency_run_make(study.dataset, name=RUN_NAME, overlays=with_map)
    return _build_from(study, run.pk, builder="top_n")


def _url(study, index, key):
    return f"/read/{study.pk}/case/{index}/saliency/{key}.png"


def _candidate_with_map(study, user, index=1):
    _, case, candidates = _reader_case(study, user, index)
    return next(c for c in candidates if c.position < 2)


def _candidate_without_map(study, user, index=1):
    _, case, candidates = _reader_case(study, user, index)
    return next(c for c in candidates if c.position >= 2)


# --- which run ----------------------------------------------------------------------------------


def test_the_first_classifier_run_with_maps_in_builder_order_is_used(db):
    study = study_make(n_cases=1, n_candidates=2, show_saliency=True)
    image = study.cases.get().query_id
    off_the_shelf = saliency_run_make(study.dataset, name="vit", method="timm", overlays=[image])
    a = saliency_run_make(study.dataset, name="a", overlays=[image])
    b = saliency_run_make(study.dataset, name="b", method="finetune", overlays=[image])
    assert study_saliency_run(study=_build_from(study, off_the_shelf.pk, a.pk, b.pk)) == a
    assert study_saliency_run(study=_build_from(study, b.pk, a.pk)) == b
    assert study_saliency_run(study=_build_from(study, a.pk, builder="knn_farthest")) == a


@pytest.mark.parametrize(
    "unfit",
    [
        {"method": "timm"},  # not a classifier, even with files in its folder
        {"method": "ssim"},
        {"saliency": ""},  # a classifier run told not to compute saliency
        {"status": "failed"},  # not finished
        {"overlays": ()},  # no map written
    ],
)
def test_runs_without_usable_maps_are_skipped(db, unfit):
    study = study_make(n_cases=1, n_candidates=2, show_saliency=True)
    image = study.cases.get().query_id
    bad = saliency_run_make(study.dataset, name="bad", **{"overlays": [image], **unfit})
    assert study_saliency_run(study=_build_from(study, bad.pk)) is None
    good = saliency_run_make(study.dataset, name="good", overlays=[image])
    assert study_saliency_run(study=_build_from(study, bad.pk, good.pk)) == good


def test_studies_built_without_a_run_have_no_saliency_run(db):
    study = study_make(
        n_cases=1, n_candidates=2, show_saliency=True, builder="case_list", builder_config={"file_name": "cases.csv"}
    )
    saliency_run_make(study.dataset, overlays=[study.cases.get().query_id])  # a run exists, but not the study's
    assert study_saliency_run(study=study) is None


# --- what the reader's page and JSON carry --------------------------------------------------------


def test_payload_names_overlays_of_the_images_that_have_one(client, reader, sal_study):
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{sal_study.pk}/cases/1/").json()
    assert payload["query"]["saliency"] == _url(sal_study, 1, "query")
    with_map = {c["key"]: c.get("saliency") for c in payload["candidates"]}
    expected = {c.key for c in _reader_case(sal_study, reader)[2] if c.position < 2}
    assert {k for k, url in with_map.items() if url} == expected
    assert all(url == _url(sal_study, 1, k) for k, url in with_map.items() if url)
    html = client.get(f"/read/{sal_study.pk}/case/1/").content.decode()
    assert 'id="saliency-btn"' in html and html.count('class="saliency-overlay"') == 2
    assert 'data-saliency="' + _url(sal_study, 1, "query") + '"' in html


def test_nothing_of_the_run_reaches_the_reader(client, reader, sal_study):
    client.force_login(reader)
    run = study_saliency_run(study=sal_study)
    texts = [
        client.get(f"/read/{sal_study.pk}/case/1/").content.decode(),
        client.get(f"/api/reading/studies/{sal_study.pk}/cases/1/").content.decode(),
    ]
    response = client.get(_url(sal_study, 1, "query"))
    texts.append(str(response.headers))
    for text in texts:
        assert "zqxrun" not in text and f"/runs/{run.pk}/" not in text
        # the run id as an address segment (a candidate key, 16 hex digits, may start with its digits)
        assert not re.search(rf"/saliency/{run.pk}(?![0-9a-f])", text)
    query_id = _reader_case(sal_study, reader)[1].query_id
    assert str(query_id) not in response["Content-Disposition"]


@pytest.mark.parametrize("change", [{"show_saliency": False}, {"builder_config": {}}])
def test_no_toggle_and_no_addresses_without_overlays(client, reader, sal_study, change):
    for field, value in change.items():
        setattr(sal_study, field, value)
    sal_study.save()
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{sal_study.pk}/cases/1/").json()
    assert "saliency" not in payload["query"] and all("saliency" not in c for c in payload["candidates"])
    html = client.get(f"/read/{sal_study.pk}/case/1/").content.decode()
    assert "saliency" not in html.lower()


# --- the overlay address --------------------------------------------------------------------------


def test_assigned_reader_gets_the_overlays_of_the_case(client, reader, sal_study):
    client.force_login(reader)
    _, case, _ = _reader_case(sal_study, reader)
    response = client.get(_url(sal_study, 1, "query"))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == overlay_bytes(case.query_id)
    candidate = _candidate_with_map(sal_study, reader)
    response = client.get(_url(sal_study, 1, candidate.key))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == overlay_bytes(candidate.image_id)


def test_image_without_a_map_is_not_found(client, reader, sal_study):
    client.force_login(reader)
    assert client.get(_url(sal_study, 1, _candidate_without_map(sal_study, reader).key)).status_code == 404


def test_show_saliency_off_is_not_found(client, reader, sal_study):
    sal_study.show_saliency = False
    sal_study.save()
    client.force_login(reader)
    assert client.get(_url(sal_study, 1, "query")).status_code == 404
    assert client.get(_url(sal_study, 1, _candidate_with_map(sal_study, reader).key)).status_code == 404


def test_image_not_in_the_case_is_not_found(client, reader, sal_study):
    from annotations import services
    from tests.reading.factories import answer_payload

    assignment, case1, _ = _reader_case(sal_study, reader, 1)
    services.answer_submit(
        assignment=assignment,
        case=case1,
        client_token="token-sal-1",
        payload=answer_payload(sal_study, case1, assignment),
    )  # case 2 may be opened now
    client.force_login(reader)
    other_case_key = _candidate_with_map(sal_study, reader, index=2).key
    assert client.get(_url(sal_study, 2, other_case_key)).status_code == 200
    assert client.get(_url(sal_study, 1, other_case_key)).status_code == 404  # a candidate of another case
    assert client.get(_url(sal_study, 1, str(case1.query_id))).status_code == 404  # an image id is no key
    assert client.get(_url(sal_study, 1, "0123456789abcdef")).status_code == 404


def test_keys_are_per_reader(client, reader, other_reader, sal_study):
    key = _candidate_with_map(sal_study, reader).key
    client.force_login(other_reader)
    assert client.get(_url(sal_study, 1, key)).status_code == 404
    assert client.get(_url(sal_study, 1, _candidate_with_map(sal_study, other_reader).key)).status_code == 200


def test_cases_not_yet_open_are_not_found(client, reader, sal_study):
    client.force_login(reader)
    assert client.get(_url(sal_study, 2, "query")).status_code == 404  # case 1 not answered yet
    assert client.get(_url(sal_study, 3, "query")).status_code == 404  # no case 3


@pytest.mark.parametrize("status", [StudyStatus.CLOSED, StudyStatus.DRAFT])
def test_only_open_studies_serve_overlays(client, reader, sal_study, status):
    sal_study.status = status
    sal_study.save()
    client.force_login(reader)
    assert client.get(_url(sal_study, 1, "query")).status_code == 404


@pytest.mark.parametrize(
    "persona,expected",
    [
        ("anonymous", 302),
        ("nobody", 403),
        ("researcher", 404),
        ("coordinator", 404),
    ],
)
def test_others_are_refused(client, request, reader, sal_study, persona, expected):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(_url(sal_study, 1, "query"))
    assert response.status_code == expected
    if persona == "anonymous":
        assert response["Location"].startswith("/accounts/login/")


def test_a_reader_of_another_study_is_not_found(client, django_user_model, sal_study):
    from core.roles import READER, user_set_roles

    stranger = django_user_model.objects.create_user(username="stranger", password="pw")
    user_set_roles(user=stranger, roles=[READER])
    study_make(readers=[stranger], n_cases=1, n_candidates=2, show_saliency=True)
    client.force_login(stranger)
    assert client.get(_url(sal_study, 1, "query")).status_code == 404


def test_assigned_coordinator_gets_overlays(client, coordinator, sal_study):
    assign(sal_study, coordinator)
    client.force_login(coordinator)
    assert client.get(_url(sal_study, 1, "query")).status_code == 200


# --- the coordinator's dashboard --------------------------------------------------------------------


def test_dashboard_names_the_saliency_run(client, coordinator, sal_study):
    client.force_login(coordinator)
    html = client.get(f"/studies/{sal_study.pk}/").content.decode()
    assert re.search(r'id="saliency-run">' + RUN_NAME + "<", html)
    _build_from(sal_study, 999_999, builder="top_n")
    html = client.get(f"/studies/{sal_study.pk}/").content.decode()
    assert 'id="saliency-none"' in html and RUN_NAME not in html
