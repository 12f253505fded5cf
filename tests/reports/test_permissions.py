"""Every report page, download and API endpoint × every persona: researchers and coordinators only."""

from __future__ import annotations

import pytest

from readerstudy.models import Assignment, StudyStatus
from reports.build import SCHEMA
from reports.models import ReportRun
from reports.options import ReportOptions

PERSONAS = ["anonymous", "nobody", "reader", "other_reader", "researcher", "coordinator"]
ALLOWED = {"researcher", "coordinator"}


@pytest.fixture
def setup(generate, request, reader):
    g = generate(mode="choose_k", n_cases=4, n_readers=2, q=0.5, status=StudyStatus.OPEN)
    Assignment.objects.create(study=g.study, reader=reader, seed=5)  # `reader` reads this very study
    run = ReportRun.objects.create(
        study=g.study,
        options=ReportOptions(n_resamples=10).as_dict(),
        key="k",
        fingerprint="f",
        status="succeeded",
        result={"schema": SCHEMA},
    )
    return g.study, run


def _endpoints(study, run) -> list[tuple[str, str, str]]:
    pk = study.pk
    pages = [
        ("get", "/reports/", "page"),
        ("get", f"/reports/studies/{pk}/", "page"),
        ("post", f"/reports/studies/{pk}/bootstrap/", "post"),
    ]
    pages += [
        ("get", f"/reports/studies/{pk}/download/{fmt}/", "page") for fmt in ("json", "csv", "imrmc", "html", "pdf")
    ]
    api = [
        ("get", f"/api/reports/studies/{pk}/", "api"),
        ("post", f"/api/reports/studies/{pk}/bootstrap/", "api"),
        ("get", f"/api/reports/runs/{run.pk}/", "api"),
        ("get", f"/api/reports/runs/{run.pk}/result/", "api"),
    ]
    return pages + api


@pytest.mark.parametrize("persona", PERSONAS)
def test_role_matrix(client, request, setup, persona):
    study, run = setup
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    for method, url, kind in _endpoints(study, run):
        data = {"n_resamples": 10} if method == "post" else None
        response = getattr(client, method)(url, data) if data else getattr(client, method)(url)
        code = response.status_code
        if persona in ALLOWED:
            assert code in (200, 202, 302), (persona, url, code)
            if code == 302:
                assert "/accounts/login/" not in response["Location"], url
        elif persona == "anonymous":
            if kind == "api":
                assert code in (401, 403), (url, code)
            else:
                assert code == 302 and response["Location"].startswith("/accounts/login/"), (url, code)
        else:
            assert code == 403, (persona, url, code)
            assert b"fleiss" not in response.content.lower()
    # the page POST queues one report; the API POST asks for the very same one and gets it back
    assert ReportRun.objects.filter(study=study).count() == (2 if persona in ALLOWED else 1)


def test_reader_cannot_read_the_report_of_their_own_study(client, setup, reader):
    study, _ = setup
    client.force_login(reader)
    assert client.get(f"/reports/studies/{study.pk}/").status_code == 403
    assert client.get(f"/api/reports/studies/{study.pk}/").status_code == 403
    assert client.get(f"/reports/studies/{study.pk}/download/csv/").status_code == 403


def test_bootstrap_start_needs_post(client, setup, researcher):
    study, _ = setup
    client.force_login(researcher)
    assert client.get(f"/reports/studies/{study.pk}/bootstrap/").status_code == 405


def test_unknown_study_is_404(client, researcher, db):
    client.force_login(researcher)
    assert client.get("/reports/studies/999999/").status_code == 404
    assert client.get("/api/reports/studies/999999/").status_code == 404
    assert client.get("/reports/studies/999999/download/json/").status_code == 404
