"""The Retry buttons: a failed import (coordinators) and a failed upload search (who may search) are queued again."""

from __future__ import annotations

import pytest

from retrieval.imports import services
from retrieval.models import ImportJob, ModelRun, SearchRequest
from tests.conftest import client_for
from tests.factories import png_bytes, write_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_import(tmp_path):
    dataset = services.dataset_create(name="d")
    job = services.import_job_create(
        dataset=dataset, source_path=write_files(tmp_path / "s", {"a.png": png_bytes(1)}), enqueue=False
    )
    ImportJob.objects.filter(pk=job.pk).update(status="failed", error="Unexpected error: OSError: disk full")
    return job


def test_a_coordinator_retries_a_failed_import(client, coordinator, failed_import, django_capture_on_commit_callbacks):
    page = client_for(client, coordinator).get(f"/imports/{failed_import.pk}/")
    assert "Retry the import" in page.content.decode() and "disk full" in page.content.decode()
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(f"/imports/{failed_import.pk}/retry/", follow=True)
    assert "Import queued again." in response.content.decode() and len(queued) == 1
    failed_import.refresh_from_db()
    assert (failed_import.status, failed_import.error) == ("pending", "")
    with django_capture_on_commit_callbacks() as queued:  # a second click queues nothing
        response = client.post(f"/imports/{failed_import.pk}/retry/", follow=True)
    assert "is pending; only a failed one can be retried" in response.content.decode() and not queued


@pytest.mark.parametrize("persona, status", [("researcher", 403), ("reader", 403)])
def test_only_coordinators_retry_imports(client, request, failed_import, persona, status):
    user = request.getfixturevalue(persona)
    assert client_for(client, user).post(f"/imports/{failed_import.pk}/retry/").status_code == status
    assert ImportJob.objects.get(pk=failed_import.pk).status == "failed"


def test_a_failed_upload_search_is_retried_from_its_page(
    client, researcher, reader, tmp_path, django_capture_on_commit_callbacks
):
    dataset = services.dataset_create(name="d")
    run = ModelRun.objects.create(dataset=dataset, name="r", method="timm", status="succeeded")
    upload = tmp_path / "q.png"
    upload.write_bytes(png_bytes(2))
    req = SearchRequest.objects.create(
        run=run, upload_path=str(upload), k=3, status="failed", error="Unexpected error: RuntimeError: out of memory"
    )
    assert client_for(client, reader).post(f"/searches/{req.pk}/retry/").status_code == 403
    page = client_for(client, researcher).get(f"/searches/{req.pk}/")
    assert "Retry the search" in page.content.decode()
    with django_capture_on_commit_callbacks() as queued:
        client.post(f"/searches/{req.pk}/retry/")
    assert SearchRequest.objects.get(pk=req.pk).status == "pending" and len(queued) == 1
    SearchRequest.objects.filter(pk=req.pk).update(status="failed")
    upload.unlink()  # the image is gone: the page says to upload it again
    response = client.post(f"/searches/{req.pk}/retry/", follow=True)
    assert "upload it again" in response.content.decode()
    assert SearchRequest.objects.get(pk=req.pk).status == "failed"
