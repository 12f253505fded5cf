"""A reader who also holds another role (or is a superuser) is blinded while reading (issue 12, Medium 10).

Assigned to a study that is not closed, a coordinator, researcher or superuser gets 403 from every
study-level read that carries provenance, progress or answers — the dashboard, the study, cases and
progress API, the report page, its downloads and API, report runs — and gets them back once the study is
closed. Unassigned colleagues keep their access throughout.
"""

from __future__ import annotations

import pytest

from core.roles import COORDINATOR, READER, RESEARCHER, user_set_roles
from readerstudy.models import StudyStatus
from readerstudy.selectors import BLINDED_MESSAGE
from reports.models import ReportRun
from tests.reading.factories import study_make


def _addresses(study, report_run) -> list[tuple[str, str]]:
    s = study.pk
    return [
        ("get", f"/studies/{s}/"),
        ("get", f"/studies/{s}/cases/1/"),
        ("get", f"/api/studies/{s}/"),
        ("get", f"/api/studies/{s}/cases/"),
        ("get", f"/api/studies/{s}/progress/"),
        ("get", f"/reports/studies/{s}/"),
        ("get", f"/reports/studies/{s}/download/csv/"),
        ("get", f"/reports/studies/{s}/download/json/"),
        ("get", f"/api/reports/studies/{s}/"),
        ("post", f"/api/reports/studies/{s}/bootstrap/"),
        ("post", f"/reports/studies/{s}/bootstrap/"),
        ("get", f"/api/reports/runs/{report_run.pk}/"),
        ("get", f"/api/reports/runs/{report_run.pk}/result/"),
    ]


@pytest.fixture
def personas(django_user_model):
    both = django_user_model.objects.create_user(username="coord_reader", password="pw")
    user_set_roles(user=both, roles=[COORDINATOR, READER])
    res = django_user_model.objects.create_user(username="res_reader", password="pw")
    user_set_roles(user=res, roles=[RESEARCHER, READER])
    root = django_user_model.objects.create_superuser(username="root_reader", password="pw")
    return [both, res, root]


@pytest.mark.parametrize("status", [StudyStatus.OPEN, StudyStatus.DRAFT])
def test_an_assigned_reader_with_a_second_role_sees_nothing_study_level(client, personas, coordinator, status):
    study = study_make(readers=personas, status=status, n_cases=2, n_candidates=3)
    report_run = ReportRun.objects.create(study=study, options={}, key="k", fingerprint="f")
    for user in personas:
        client.force_login(user)
        for method, address in _addresses(study, report_run):
            response = getattr(client, method)(address)
            assert response.status_code == 403, (user.username, address, response.status_code)
            if address.startswith("/api/"):
                assert response.json()["detail"] == BLINDED_MESSAGE
    assert not ReportRun.objects.exclude(pk=report_run.pk).exists()  # no bootstrap was queued
    client.force_login(coordinator)  # an unassigned coordinator keeps the dashboard and the report
    for address in (f"/studies/{study.pk}/", f"/api/studies/{study.pk}/cases/", f"/reports/studies/{study.pk}/"):
        assert client.get(address).status_code == 200, address


def test_once_the_study_is_closed_its_readers_see_the_results(client, personas):
    study = study_make(readers=personas, n_cases=2, n_candidates=3)
    study.status = StudyStatus.CLOSED
    study.save(update_fields=["status"])
    for user in personas:
        client.force_login(user)
        for address in (f"/studies/{study.pk}/", f"/api/studies/{study.pk}/progress/", f"/reports/studies/{study.pk}/"):
            assert client.get(address).status_code == 200, (user.username, address)
