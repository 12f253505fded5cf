"""The admin applies the services' rules: cases read-only, answered studies and assignments protected."""

from __future__ import annotations

import pytest

from tests.studies.factories import answer

pytestmark = pytest.mark.django_db


def test_coordinator_opens_the_study_admin_pages(client, coordinator, assigned):
    client.force_login(coordinator)
    case = assigned.cases.first()
    assignment = assigned.assignments.first()
    for url in (
        "/admin/readerstudy/study/",
        f"/admin/readerstudy/study/{assigned.pk}/change/",
        "/admin/readerstudy/case/",
        f"/admin/readerstudy/case/{case.pk}/change/",
        "/admin/readerstudy/assignment/",
        f"/admin/readerstudy/assignment/{assignment.pk}/change/",
    ):
        assert client.get(url).status_code == 200, url


def test_cases_cannot_be_added_or_deleted_in_the_admin(client, coordinator, assigned):
    client.force_login(coordinator)
    case = assigned.cases.first()
    assert client.get("/admin/readerstudy/case/add/").status_code == 403
    assert client.get(f"/admin/readerstudy/case/{case.pk}/delete/").status_code == 403
    assert client.get("/admin/readerstudy/assignment/add/").status_code == 403


def test_answered_study_is_protected_in_the_admin(client, coordinator, assigned, reader):
    answer(assigned, reader)
    client.force_login(coordinator)
    assert client.get(f"/admin/readerstudy/study/{assigned.pk}/delete/").status_code == 403
    assignment = assigned.assignments.get(reader=reader)
    assert client.get(f"/admin/readerstudy/assignment/{assignment.pk}/delete/").status_code == 403
    form = client.get(f"/admin/readerstudy/study/{assigned.pk}/change/").context["adminform"].form
    assert "mode" not in form.fields and "k" not in form.fields and "name" in form.fields


def test_unanswered_study_can_be_deleted(client, coordinator, study):
    client.force_login(coordinator)
    assert client.get(f"/admin/readerstudy/study/{study.pk}/delete/").status_code == 200


def test_researcher_views_but_does_not_change(client, researcher, assigned):
    researcher.is_staff = True  # only coordinators are staff by default; view permission is what counts here
    researcher.save()
    client.force_login(researcher)
    assert client.get("/admin/readerstudy/study/").status_code == 200
    assert client.get(f"/admin/readerstudy/study/{assigned.pk}/delete/").status_code == 403
