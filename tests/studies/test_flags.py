"""Readers' flags reach the coordinator (issue 16, point 6): the study page lists every flagged case with
reader, comment and a link to a read-only view of the case; the case view shows the flags and the
catalogue with provenance. Readers and blinded colleagues get 403, anonymous users the login page."""

from __future__ import annotations

import pytest

from annotations import services
from readerstudy.models import Assignment
from tests.reading.factories import study_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def flagged(reader, other_reader):
    study = study_make(readers=[reader, other_reader], n_cases=3, n_candidates=4, marker="flagtest")
    cases = list(study.cases.order_by("position"))
    a1 = Assignment.objects.get(study=study, reader=reader)
    a2 = Assignment.objects.get(study=study, reader=other_reader)
    services.flag_set(assignment=a1, case=cases[2], comment="The query is <b>rotated</b>")
    services.flag_set(assignment=a2, case=cases[2], comment="")
    services.flag_set(assignment=a2, case=cases[0], comment="Label looks wrong")
    return study


def test_study_page_lists_flags_with_reader_comment_and_link(client, coordinator, flagged):
    client.force_login(coordinator)
    html = client.get(f"/studies/{flagged.pk}/").content.decode()
    section = html[html.index('id="flags"') : html.index('id="cases"')]
    assert 'Flagged cases <small class="muted">(3)</small>' in section
    # Case order, then reader; the comment escaped; an empty comment says so.
    rows = section.split("<tr data-case=")[1:]
    assert [("Case 1" in r, "Case 3" in r) for r in rows] == [(True, False), (False, True), (False, True)]
    assert "Label looks wrong" in rows[0] and "other_reader" in rows[0]
    assert "(no comment)" in rows[1] and "other_reader" in rows[1]  # readers in name order
    assert "The query is &lt;b&gt;rotated&lt;/b&gt;" in rows[2] and "<td>reader</td>" in rows[2]
    assert f'href="/studies/{flagged.pk}/cases/3/"' in rows[2]


def test_study_page_without_flags_says_so(client, coordinator, reader):
    study = study_make(readers=[reader], n_cases=1, n_candidates=2)
    client.force_login(coordinator)
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert "No reader has flagged a case." in html


def test_case_view_is_read_only_with_flags_and_provenance(client, researcher, flagged):
    client.force_login(researcher)
    response = client.get(f"/studies/{flagged.pk}/cases/3/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Case 3" in html and "of 3" in html
    assert "The query is &lt;b&gt;rotated&lt;/b&gt;" in html
    assert html.count("method-flagtest") == 4  # the provenance of each of the four candidates
    assert f'href="/studies/{flagged.pk}/cases/2/"' in html  # previous case; no next one
    assert f'href="/studies/{flagged.pk}/cases/4/"' not in html
    assert "<form" not in html.split('id="case-flags"')[1]  # read-only: nothing to submit
    assert client.get(f"/studies/{flagged.pk}/cases/2/").content.decode().count("No reader has flagged this case.")
    assert client.get(f"/studies/{flagged.pk}/cases/4/").status_code == 404
    assert client.get(f"/studies/{flagged.pk}/cases/0/").status_code == 404


def test_case_view_refuses_readers_and_asks_anonymous_to_log_in(client, reader, flagged):
    assert client.get(f"/studies/{flagged.pk}/cases/1/").status_code == 302
    client.force_login(reader)
    response = client.get(f"/studies/{flagged.pk}/cases/1/")
    assert response.status_code == 403
    assert b"flagtest" not in response.content
