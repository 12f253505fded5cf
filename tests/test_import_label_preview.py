"""A label table is shown column by column before anything is stored: the web form's preview page,
the API's `preview`, `import_images --preview`; free text only with the coordinator's consent
(issue 12, finding 5)."""

import os
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from retrieval.imports import ingest, services
from retrieval.imports.uploads import uploads_expired_remove
from retrieval.models import ImportJob, Label
from tests.factories import png_bytes, zip_bytes

pytestmark = pytest.mark.django_db

TABLE = (
    b"filename,patient_id,patient_mrn,pt_name,patient_dob,nhs_no,national_id,birth_place,forename,notes,finding\n"
    b"a.png,P1,MRN-555,Doe^Jane,1950-01-02,943 476 5919,AB123456C,Leeds,Jane,Called husband John Doe at home,effusion\n"
    b"b.png,P2,MRN-777,Roe^Rick,1960-03-04,943 476 5920,AB123456D,York,Rick,,normal\n"
)
IDENTIFIERS = ["patient_mrn", "pt_name", "patient_dob", "nhs_no", "national_id", "birth_place", "forename"]
SECRETS = ["MRN-555", "Doe", "1950", "943 476", "AB123456", "Leeds", "Jane", "husband"]


@pytest.fixture(autouse=True)
def upload_root(settings, tmp_path):
    settings.UPLOAD_ROOT = (tmp_path / "uploads").resolve()
    return settings.UPLOAD_ROOT


def uploads(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def upload_form(client, ds, **extra):
    files = {
        "archive": SimpleUploadedFile("imgs.zip", zip_bytes({"a.png": png_bytes(1), "b.png": png_bytes(2)})),
        "labels": SimpleUploadedFile("labels.csv", TABLE),
        "label_format": "generic",
        **extra,
    }
    return client.post(f"/datasets/{ds.pk}/import/", files)


def token_of(page: str) -> str:
    start = page.index('name="token" value="') + len('name="token" value="')
    return page[start : page.index('"', start)]


def test_web_upload_shows_the_columns_and_stores_nothing_before_confirmation(
    client, coordinator, upload_root, django_capture_on_commit_callbacks
):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    response = upload_form(client, ds)
    assert response.status_code == 200
    page = response.content.decode()
    assert not ImportJob.objects.exists()  # nothing queued, nothing stored yet
    for column in IDENTIFIERS:
        assert f"<td>{column}</td><td>dropped: looks like a patient identifier</td>" in page
    assert "<td>notes</td><td>refused: free text</td>" in page
    assert "<td>finding</td><td>imported as a label</td>" in page and "effusion · normal" in page
    assert "<td>patient_id</td><td>patient ID: replaced by a pseudonym</td>" in page
    for secret in SECRETS + ["P1"]:
        assert secret not in page, secret  # samples only of the kept columns

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/datasets/{ds.pk}/import/confirm/", {"token": token_of(page), "action": "confirm"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert not job.allow_free_text
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.n_imported == 2, job.report
    assert set(Label.objects.values_list("name", flat=True)) == {"finding"}
    messages = " ".join(r["message"] for r in job.report)
    assert "column 'notes' looks like free text" in messages
    assert all(f"column {c!r} looks like a patient identifier" in messages for c in IDENTIFIERS)
    assert uploads(upload_root) == []


def test_free_text_can_be_allowed_on_the_preview_page(client, coordinator, django_capture_on_commit_callbacks):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    page = upload_form(client, ds).content.decode()
    again = client.post(
        f"/datasets/{ds.pk}/import/confirm/", {"token": token_of(page), "action": "preview", "allow_free_text": "on"}
    ).content.decode()
    assert "<td>notes</td><td>imported as a label</td>" in again
    with django_capture_on_commit_callbacks(execute=False):
        client.post(f"/datasets/{ds.pk}/import/confirm/", {"token": token_of(again), "action": "confirm"})
    job = ImportJob.objects.get()
    assert job.allow_free_text
    ingest.import_job_run(job_id=job.pk)
    assert set(Label.objects.values_list("name", flat=True)) == {"finding", "notes"}
    assert not Label.objects.filter(value_text__contains="Leeds").exists()


def test_form_checkbox_allows_free_text_from_the_start(client, coordinator):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    page = upload_form(client, ds, allow_free_text="on").content.decode()
    assert "<td>notes</td><td>imported as a label</td>" in page


def test_cancel_removes_the_uploads(client, coordinator, upload_root):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    page = upload_form(client, ds).content.decode()
    assert len(uploads(upload_root)) == 2
    response = client.post(f"/datasets/{ds.pk}/import/confirm/", {"token": token_of(page), "action": "cancel"})
    assert response.status_code == 302 and uploads(upload_root) == [] and not ImportJob.objects.exists()


def test_a_forged_or_foreign_token_is_refused(client, coordinator, reader):
    ds = services.dataset_create(name="web")
    other = services.dataset_create(name="other")
    client.force_login(coordinator)
    page = upload_form(client, ds).content.decode()
    assert client.post(f"/datasets/{ds.pk}/import/confirm/", {"token": "x", "action": "confirm"}).status_code == 302
    client.post(f"/datasets/{other.pk}/import/confirm/", {"token": token_of(page), "action": "confirm"})
    assert not ImportJob.objects.exists()
    client.force_login(reader)
    assert client.post(f"/datasets/{ds.pk}/import/confirm/", {"token": token_of(page)}).status_code == 403


def test_an_unusable_table_is_a_form_error_and_leaves_no_upload(client, coordinator, upload_root):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    response = client.post(
        f"/datasets/{ds.pk}/import/",
        {"labels": SimpleUploadedFile("t.csv", b"name,label\na.png,1\n"), "label_format": "generic"},
    )
    assert response.status_code == 200 and "The label table cannot be used" in response.content.decode()
    assert uploads(upload_root) == [] and not ImportJob.objects.exists()


def test_an_unconfirmed_preview_is_removed_after_the_keep_window(client, coordinator, upload_root, settings):
    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    upload_form(client, ds)
    assert uploads_expired_remove() == 0 and len(uploads(upload_root)) == 2  # waiting for the coordinator
    old = time.time() - (settings.IMPORT_UPLOAD_KEEP_HOURS + 1) * 3600
    for path in uploads(upload_root):
        os.utime(path, (old, old))
    assert uploads_expired_remove(now=timezone.now() + timedelta(seconds=1)) == 2
    assert uploads(upload_root) == []


def test_api_preview_imports_nothing_and_keeps_no_upload(client, coordinator, upload_root):
    ds = services.dataset_create(name="api")
    client.force_login(coordinator)
    response = client.post(
        f"/api/datasets/{ds.pk}/imports/", {"labels": SimpleUploadedFile("t.csv", TABLE), "preview": "true"}
    )
    assert response.status_code == 200, response.content
    columns = {c["name"]: c for c in response.json()["columns"]}
    assert {c for c, v in columns.items() if v["action"] == "identifier"} == set(IDENTIFIERS)
    assert columns["notes"]["action"] == "free_text" and columns["finding"]["samples"] == ["effusion", "normal"]
    assert response.json()["rows"] == 2
    assert not ImportJob.objects.exists() and uploads(upload_root) == []
    assert not any(s in response.content.decode() for s in SECRETS)


def test_api_allow_free_text_reaches_the_job(client, coordinator):
    ds = services.dataset_create(name="api")
    client.force_login(coordinator)
    response = client.post(
        f"/api/datasets/{ds.pk}/imports/",
        {"labels": SimpleUploadedFile("t.csv", TABLE), "allow_free_text": "true"},
    )
    assert response.status_code == 202 and response.json()["allow_free_text"] is True
    assert ImportJob.objects.get().allow_free_text


def test_command_preview_and_flag(tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(TABLE)
    out = StringIO()
    call_command("import_images", "cmd", "--labels", str(table), "--preview", stdout=out)
    text = out.getvalue()
    assert "'patient_mrn': dropped: looks like a patient identifier" in text
    assert "'notes': refused: free text" in text and "'finding': imported as a label" in text
    assert not ImportJob.objects.exists()
    call_command("import_images", "cmd", "--labels", str(table), "--allow-free-text", "--sync", stdout=StringIO())
    assert ImportJob.objects.get().allow_free_text
