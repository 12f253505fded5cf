"""The report page: tables, figures, subgroup selector, interim banner, bootstrap with progress, errors."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from annotations.models import Answer
from reports.jobs import report_run_execute
from reports.models import ReportRun
from reports.options import ReportOptions


@pytest.fixture
def page(client, coordinator):
    client.force_login(coordinator)
    return client


def _html(response) -> str:
    assert response.status_code == 200, response.content[:1000]
    return response.content.decode()


def test_open_study_report_is_marked_interim(page, generate):
    g = generate(mode="choose_k", n_cases=6, n_readers=3, q=0.6, status="open")
    html = _html(page.get(f"/reports/studies/{g.study.pk}/"))
    assert "Interim report." in html
    assert "Fleiss κ" in html and "% agreement of each reader (Table 2)" in html
    assert html.count('src="data:image/png;base64,') >= 2
    for fmt in ("json", "csv", "imrmc", "html", "pdf"):
        assert f"/reports/studies/{g.study.pk}/download/{fmt}/?" in html


def test_closed_study_report_is_final(page, generate):
    g = generate(mode="rank_all", n_cases=5, n_readers=2, q=0.5, status="closed")
    html = _html(page.get(f"/reports/studies/{g.study.pk}/"))
    assert "Interim report." not in html
    assert "random order (expected)" in html and "nDCG@p per method and reader" in html


def test_subgroup_selector(page, generate):
    g = generate(mode="rate", n_cases=6, n_readers=2, q=0.5)
    html = _html(page.get(f"/reports/studies/{g.study.pk}/?group=reader"))
    assert re.search(r'<option value="reader" selected>', html) and "By reader" in html
    assert '<option value="finding"' in html  # the query labels offered for the class split
    html = _html(page.get(f"/reports/studies/{g.study.pk}/?group=query_class&label=finding"))
    assert "By query label &#x27;finding&#x27;" in html
    assert "By query modality" in _html(page.get(f"/reports/studies/{g.study.pk}/?group=modality"))


def test_bad_option_shows_the_message(page, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    response = page.get(f"/reports/studies/{g.study.pk}/?runs=999999")
    assert response.status_code == 400 and "not runs of this study&#x27;s dataset" in response.content.decode()


def test_bootstrap_from_the_page(page, generate, django_capture_on_commit_callbacks):
    g = generate(mode="choose_k", n_cases=6, n_readers=3, q=0.6, status="open")
    url = f"/reports/studies/{g.study.pk}/"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = page.post(
            url + "bootstrap/",
            {
                "n_resamples": "120",
                "seed": "2",
                "readers_too": "1",
                "p": "3,10",
                "tie_break": "model",
                "label": "finding",
            },
        )
    run = ReportRun.objects.get()
    assert response.status_code == 302 and f"run={run.pk}" in response["Location"] and len(callbacks) == 1
    assert run.options["tie_break"] == "model" and run.options["readers_too"] is True
    pending = _html(page.get(response["Location"]))
    assert f'data-job-progress="/api/reports/runs/{run.pk}/"' in pending and "reloads when it is ready" in pending
    report_run_execute(report_run_id=run.pk)
    done = _html(page.get(response["Location"]))
    assert f"Showing bootstrap report #{run.pk}" in done and "120 resamples, seed 2" in done
    assert re.search(r"\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", done)  # estimates with their intervals
    # without ?run=, the page finds the current bootstrap result of the same analysis options
    assert f"Showing bootstrap report #{run.pk}" in _html(page.get(url + "?tie_break=model&label=finding"))
    answer = Answer.objects.filter(assignment__study=g.study).first()
    Answer.objects.filter(pk=answer.pk).update(revision=2, submitted_at=timezone.now())  # a reader revised it
    assert "Answers changed since it was computed" in _html(page.get(response["Location"]))


def test_bootstrap_with_bad_input_writes_nothing(page, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    response = page.post(f"/reports/studies/{g.study.pk}/bootstrap/", {"n_resamples": "lots"}, follow=True)
    assert "must be whole numbers" in response.content.decode() and not ReportRun.objects.exists()


def test_failed_bootstrap_is_shown(page, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    run = ReportRun.objects.create(
        study=g.study,
        options=ReportOptions(n_resamples=5).as_dict(),
        key="k",
        fingerprint="f",
        status="failed",
        error="worker lost",
    )
    assert "failed: worker lost" in _html(page.get(f"/reports/studies/{g.study.pk}/?run={run.pk}"))


def test_empty_study_and_index(page, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2, missing={0: [0, 1], 1: [2]})
    assert "No case has been answered by every reader yet" in _html(page.get(f"/reports/studies/{g.study.pk}/"))
    index = _html(page.get("/reports/"))
    assert g.study.name in index and f"/reports/studies/{g.study.pk}/" in index


def test_run_of_another_study_is_404(page, generate):
    a = generate(mode="choose_k", n_cases=3, n_readers=2)
    b = generate(mode="choose_k", n_cases=3, n_readers=2)
    run = ReportRun.objects.create(study=b.study, options={}, key="k", fingerprint="f")
    assert page.get(f"/reports/studies/{a.study.pk}/?run={run.pk}").status_code == 404
    assert page.get(f"/reports/studies/{a.study.pk}/download/json/?run={run.pk}").status_code == 404
