"""Report API: the report JSON, queueing a bootstrap report, its status and its result."""

from __future__ import annotations

import pytest

from reports.build import SCHEMA
from reports.jobs import report_run_execute
from reports.models import ReportRun
from retrieval.models import Dataset, ModelRun


@pytest.fixture
def study(generate):
    return generate(mode="rank_all", n_cases=6, n_readers=2, q=0.5, status="open").study


@pytest.fixture
def api(client, researcher):
    client.force_login(researcher)
    return client


def test_get_report_with_options(api, study):
    data = api.get(f"/api/reports/studies/{study.pk}/?p=1,5&class_label=finding").json()
    assert data["schema"] == SCHEMA and data["interim"] is True
    assert data["options"]["p"] == [1, 5] and data["ranking"]["metrics"][:2] == ["ndcg@1", "ndcg@5"]
    assert "query_class" in data["subgroups"] and data["uncertainty"] is None


@pytest.mark.parametrize(
    "query, message",
    [("?p=0", "between 1 and 1000"), ("?tie_break=coin", "valid choice"), ("?runs=a", "whole numbers")],
)
def test_bad_query_is_400(api, study, query, message):
    response = api.get(f"/api/reports/studies/{study.pk}/{query}")
    assert response.status_code == 400 and message in response.content.decode()


def test_runs_of_another_dataset_are_400(api, study):
    other = ModelRun.objects.create(dataset=Dataset.objects.create(name="other"), name="o", method="timm")
    response = api.get(f"/api/reports/studies/{study.pk}/?runs={other.pk}")
    assert response.status_code == 400 and "not runs of this study's dataset" in response.json()["detail"]


def test_bootstrap_queue_status_result(api, study, django_capture_on_commit_callbacks):
    body = {"n_resamples": 150, "seed": 4, "readers_too": True, "p": [3, 10]}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(f"/api/reports/studies/{study.pk}/bootstrap/", body, content_type="application/json")
    assert first.status_code == 202 and len(callbacks) == 1
    run = first.json()
    assert run["status"] == "pending" and run["result_url"] is None and run["options"]["readers_too"] is True
    again = api.post(f"/api/reports/studies/{study.pk}/bootstrap/", body, content_type="application/json")
    assert again.status_code == 200 and again.json()["id"] == run["id"]
    result = api.get(f"/api/reports/runs/{run['id']}/result/")
    assert result.status_code == 409 and "pending" in result.json()["detail"]
    report_run_execute(report_run_id=run["id"])  # what the worker does
    status = api.get(f"/api/reports/runs/{run['id']}/").json()
    assert status["status"] == "succeeded" and status["percent"] == 100
    data = api.get(status["result_url"]).json()
    assert data["uncertainty"]["n_resamples"] == 150 and data["uncertainty"]["seed"] == 4
    assert data["uncertainty"]["unit"] == "cases (queries) and readers"
    # the plain report endpoint now serves the stored bootstrap result of the same data
    assert api.get(f"/api/reports/studies/{study.pk}/").json()["uncertainty"]["n_resamples"] == 150


@pytest.mark.parametrize("body", [{"n_resamples": 0}, {"seed": -1}, {"level": 2}, {"p": []}, {"tie_break": "x"}])
def test_bootstrap_bad_input_is_400_and_writes_nothing(api, study, body):
    response = api.post(f"/api/reports/studies/{study.pk}/bootstrap/", body, content_type="application/json")
    assert response.status_code == 400 and ReportRun.objects.count() == 0


def test_failed_run_result_is_409_with_the_error(api, study):
    run = ReportRun.objects.create(study=study, options={}, key="k", fingerprint="f", status="failed", error="boom")
    response = api.get(f"/api/reports/runs/{run.pk}/result/")
    assert response.status_code == 409 and "boom" in response.json()["detail"]
