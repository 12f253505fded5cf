"""Reader pages: intro, start/resume, the case page, order, end page, closed study, home page."""

from __future__ import annotations

import json
import re

import pytest

from annotations import selectors, services
from annotations.models import CaseVisit
from readerstudy.models import StudyStatus


@pytest.fixture
def logged_in(client, reader):
    client.force_login(reader)
    return client


def _answer(assignment, index):
    order = selectors.reader_order(assignment=assignment)
    case = selectors.reader_case(order=order, index=index)
    ids = list(case.candidates.values_list("pk", flat=True))
    services.answer_submit(
        assignment=assignment, case=case, payload={"selected": ids[:2]}, client_token=f"token-page-{index}"
    )


def test_intro_shows_task_and_start(logged_in, study):
    html = logged_in.get(f"/read/{study.pk}/").content.decode()
    assert "Pick exactly <strong>2</strong>" in html and "0 of 3 cases done" in html
    assert f'href="/read/{study.pk}/start/"' in html and ">Start<" in html


def test_start_resumes_at_first_unanswered(logged_in, study, assignment):
    assert logged_in.get(f"/read/{study.pk}/start/")["Location"] == f"/read/{study.pk}/case/1/"
    _answer(assignment, 1)
    assert logged_in.get(f"/read/{study.pk}/start/")["Location"] == f"/read/{study.pk}/case/2/"
    assert "Resume at case 2" in logged_in.get(f"/read/{study.pk}/").content.decode()


def test_case_page_opens_the_visit_and_shows_progress(logged_in, study, assignment):
    response = logged_in.get(f"/read/{study.pk}/case/1/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Case 1 of 3" in html and 'id="counter"' in html and ">0/2<" in html
    assert len(re.findall(r'class="tile"', html)) == 5
    assert CaseVisit.objects.filter(assignment=assignment).count() == 1
    payload = json.loads(re.search(r'<script id="case-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert payload["case"] == {"index": 1, "total": 3, "done": 0}


def test_case_page_prefetches_next_case_images(logged_in, study, assignment):
    html = logged_in.get(f"/read/{study.pk}/case/1/").content.decode()
    order = selectors.reader_order(assignment=assignment)
    nxt = selectors.reader_case(order=order, index=2)
    keys = ["query"] + [c.key for c in selectors.reader_candidates(assignment=assignment, case=nxt)]
    expected = [f"/read/{study.pk}/case/2/image/{key}.png" for key in keys]
    # Handed to reader.js, which fetches them once the current case is painted (never in <head>).
    handed = re.search(r'<script id="prefetch-data" type="application/json">(.*?)</script>', html, re.S)[1]
    assert [url.split("?v=")[0] for url in json.loads(handed)] == expected  # at their immutable addresses
    assert 'rel="prefetch"' not in html
    assert len(expected) == 6
    assert all(logged_in.get(url).status_code == 200 for url in json.loads(handed))


def test_later_case_redirects_to_current(logged_in, study):
    response = logged_in.get(f"/read/{study.pk}/case/3/")
    assert response.status_code == 302 and response["Location"] == f"/read/{study.pk}/case/1/"
    assert logged_in.get(f"/read/{study.pk}/case/9/").status_code == 404


def test_answered_case_is_read_only_without_revisions(logged_in, study, assignment):
    _answer(assignment, 1)
    html = logged_in.get(f"/read/{study.pk}/case/1/").content.decode()
    assert 'data-can-submit="0"' in html and 'id="submit-btn"' not in html
    assert "cannot be changed" in html and f'href="/read/{study.pk}/case/2/"' in html


def test_done_page_only_when_all_answered(logged_in, study, assignment):
    assert logged_in.get(f"/read/{study.pk}/done/")["Location"] == f"/read/{study.pk}/case/1/"
    for i in (1, 2, 3):
        _answer(assignment, i)
    html = logged_in.get(f"/read/{study.pk}/done/").content.decode()
    assert "Thank you" in html and "all <strong>3</strong> cases" in html
    assert logged_in.get(f"/read/{study.pk}/start/")["Location"] == f"/read/{study.pk}/done/"


def test_closed_study_pages_lead_to_closed_page(logged_in, study, assignment):
    _answer(assignment, 1)
    study.status = StudyStatus.CLOSED
    study.save()
    for page in ("", "start/", "case/1/", "done/"):
        assert logged_in.get(f"/read/{study.pk}/{page}")["Location"] == f"/read/{study.pk}/closed/"
    html = logged_in.get(f"/read/{study.pk}/closed/").content.decode()
    assert "This study is closed" in html and "1 of 3" in html


def test_closed_page_of_open_study_goes_to_intro(logged_in, study):
    assert logged_in.get(f"/read/{study.pk}/closed/")["Location"] == f"/read/{study.pk}/"


def test_draft_study_is_not_found(logged_in, study):
    study.status = StudyStatus.DRAFT
    study.save()
    assert logged_in.get(f"/read/{study.pk}/").status_code == 404
    assert study.name not in logged_in.get("/read/").content.decode()


def test_home_lists_my_studies_with_progress(logged_in, study, assignment):
    _answer(assignment, 1)
    html = logged_in.get("/").content.decode()
    assert "My reading studies" in html and study.name in html and "1 / 3" in html
    assert f'href="/read/{study.pk}/start/"' in html  # resume


def test_home_of_reader_without_studies(client, reader):
    client.force_login(reader)
    assert "No study is assigned to you yet" in client.get("/").content.decode()


def test_home_of_researcher_has_no_reading_section(client, researcher):
    client.force_login(researcher)
    assert "My reading studies" not in client.get("/").content.decode()
