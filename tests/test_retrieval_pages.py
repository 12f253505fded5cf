"""Collection pages and API: each role sees what it should, anonymous users are sent to log in."""

import pytest

from retrieval.models import Image
from tests.factories import png_bytes, write_files, zip_bytes
from tests.importing import run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(tmp_path):
    run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1)}), name="Collection")
    return Image.objects.get()


def pages(image):
    return [
        "/datasets/",
        f"/datasets/{image.dataset_id}/",
        f"/images/{image.pk}/",
        f"/images/{image.pk}/thumbnail/",
        f"/images/{image.pk}/rendition/",
        "/api/datasets/",
        f"/api/datasets/{image.dataset_id}/images/",
        f"/api/images/{image.pk}/",
    ]


def test_anonymous_is_sent_to_login(client, image):
    for url in pages(image):
        response = client.get(url)
        if url.startswith("/api/"):
            assert response.status_code in (401, 403), url
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.parametrize("persona", ["coordinator", "researcher"])
def test_coordinator_and_researcher_browse(client, image, persona, request):
    client.force_login(request.getfixturevalue(persona))
    for url in pages(image):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("persona", ["reader", "nobody"])
def test_reader_and_roleless_cannot_browse_collections(client, image, persona, request):
    client.force_login(request.getfixturevalue(persona))
    for url in pages(image):
        assert client.get(url).status_code in (403, 404), url


def test_only_coordinators_download_originals(client, image, coordinator, researcher):
    client.force_login(researcher)
    assert client.get(f"/images/{image.pk}/original/").status_code == 404
    client.force_login(coordinator)
    response = client.get(f"/images/{image.pk}/original/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == png_bytes(1)


def test_dataset_page_shows_thumbnails_and_labels(client, coordinator, tmp_path):
    from tests.factories import csv_bytes

    labels = tmp_path / "l.csv"
    labels.write_bytes(csv_bytes([["filename", "Cardiomegaly"], ["a.png", "1"], ["b.png", "0"]]))
    job = run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1), "b.png": png_bytes(2)}), labels=labels)
    client.force_login(coordinator)
    html = client.get(f"/datasets/{job.dataset_id}/").content.decode()
    assert html.count("/thumbnail/") == 2
    assert "Cardiomegaly" in html
    filtered = client.get(f"/datasets/{job.dataset_id}/?label=Cardiomegaly&value=1").content.decode()
    assert filtered.count("/thumbnail/") == 1


def test_empty_states(client, coordinator):
    client.force_login(coordinator)
    assert "No dataset yet" in client.get("/datasets/").content.decode()


def test_upload_through_the_web_queues_an_import(client, coordinator, django_capture_on_commit_callbacks, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from retrieval.imports import ingest, services
    from retrieval.models import ImportJob

    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    archive = SimpleUploadedFile("imgs.zip", zip_bytes({"a.png": png_bytes(1), "b.png": png_bytes(2)}))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/datasets/{ds.pk}/import/", {"archive": archive, "label_format": "generic"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert len(callbacks) == 1  # the task is sent only after the job row is committed
    upload = __import__("pathlib").Path(job.source_path)
    ingest.import_job_run(job_id=job.pk)  # what the worker does with it
    job.refresh_from_db()
    assert job.n_imported == 2
    assert not upload.exists() and job.source_path == ""  # upload removed, its path forgotten
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert "2 imported" in page


def test_upload_form_without_files_shows_error(client, coordinator):
    from retrieval.imports import services

    ds = services.dataset_create(name="web")
    client.force_login(coordinator)
    response = client.post(f"/datasets/{ds.pk}/import/", {"label_format": "generic"})
    assert response.status_code == 200
    assert "Choose an archive of images, a label table, or both." in response.content.decode()


def test_api_import_is_coordinator_only(client, researcher, coordinator):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from retrieval.imports import services

    ds = services.dataset_create(name="api")
    client.force_login(researcher)
    archive = SimpleUploadedFile("imgs.zip", zip_bytes({"a.png": png_bytes(1)}))
    assert client.post(f"/api/datasets/{ds.pk}/imports/", {"archive": archive}).status_code == 403
    client.force_login(coordinator)
    archive = SimpleUploadedFile("imgs.zip", zip_bytes({"a.png": png_bytes(1)}))
    response = client.post(f"/api/datasets/{ds.pk}/imports/", {"archive": archive})
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert client.get(f"/api/imports/{response.json()['id']}/").json()["id"] == response.json()["id"]


def test_api_dataset_create_refuses_duplicates_with_400(client, coordinator):
    client.force_login(coordinator)
    assert client.post("/api/datasets/create/", {"name": "x"}).status_code == 201
    response = client.post("/api/datasets/create/", {"name": "x"})
    assert response.status_code == 400 and "already exists" in response.json()["detail"]


def test_unknown_page_gets_the_error_page(client, coordinator, settings):
    settings.DEBUG = False
    client.force_login(coordinator)
    response = client.get("/no/such/page/")
    assert response.status_code == 404 and "There is nothing at this address." in response.content.decode()
