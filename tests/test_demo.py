"""The demo sets itself up: accounts per role, both collections, a queued training run; idempotent."""

import pytest
from django.core.management import call_command

from core.roles import has_role
from readerstudy.demo import DEMO_RUN, DICOM_DATASET, PHANTOM_DATASET
from retrieval.models import Dataset, Image, ModelRun, Rating
from retrieval.runs.ratings import rating_characteristics


@pytest.mark.django_db
def test_demo_setup(tmp_path, settings, client, django_user_model, capsys):
    settings.DATA_DIR = tmp_path
    call_command("demo", "--setup-only", "--phantoms", "30")
    out = capsys.readouterr().out
    assert "coordinator" in out and "demo-reader1" in out
    for name, role in [("coordinator", "coordinator"), ("researcher", "researcher"), ("reader1", "reader")]:
        assert has_role(django_user_model.objects.get(username=name), role)
    phantoms = Dataset.objects.get(name=PHANTOM_DATASET)
    assert phantoms.images.count() == 30 and phantoms.images.filter(labels__name="Cardiomegaly").count() == 30
    # three simulated readers' ratings of every phantom, ready for a rating-metric run (paper 004)
    assert Rating.objects.filter(image__dataset=phantoms).count() == 90
    assert rating_characteristics(phantoms) == ["effusion", "heart_size", "opacity"]
    dicom = Dataset.objects.get(name=DICOM_DATASET)
    ct = dicom.images.get(modality="CT")
    assert ct.slices_in_series > 1 and ct.window_source == "dicom"
    assert dicom.images.filter(modality="CR").exists()  # the MONOCHROME1 sample
    # the raw pydicom samples (original tags) do not stay in the data folder (issue 12, finding 14)
    assert not (tmp_path / "demo" / "dicom").exists()
    assert not list(tmp_path.joinpath("demo").rglob("*.dcm"))
    assert ModelRun.objects.get(name=DEMO_RUN).status == "pending"
    from readerstudy.models import Study

    studies = Study.objects.filter(status="open")
    assert {s.mode for s in studies} == {"choose_k", "rank_all"}
    assert all(s.assignments.count() == 3 and s.cases.count() > 0 for s in studies)
    assert client.login(username="reader1", password="demo-reader1")
    assert "Demo: choose the 5 most similar of 10" in client.get("/read/").content.decode()
    # logging in as the demo coordinator shows both collections with thumbnails
    assert client.login(username="coordinator", password="demo-coordinator")
    html = client.get(f"/datasets/{phantoms.pk}/").content.decode()
    assert "/thumbnail/" in html and "Cardiomegaly" in html
    image = Image.objects.filter(dataset=dicom).first()
    assert client.get(f"/images/{image.pk}/rendition/").status_code == 200
    # a second run changes nothing
    call_command("demo", "--setup-only", "--phantoms", "30")
    assert Image.objects.count() == 30 + dicom.images.count() and Rating.objects.count() == 90
    assert ModelRun.objects.count() == 1 and Study.objects.count() == 2


def test_login_page_is_served(client, db):
    html = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in html and 'name="password"' in html


@pytest.mark.django_db
def test_a_second_demo_keeps_passwords_and_sessions_and_requeues_an_unfinished_run(
    tmp_path, settings, client, django_user_model, capsys, django_capture_on_commit_callbacks
):
    settings.DATA_DIR = tmp_path
    call_command("demo", "--setup-only", "--phantoms", "20")
    assert client.login(username="coordinator", password="demo-coordinator")
    coordinator_hash = django_user_model.objects.get(username="coordinator").password
    reader = django_user_model.objects.get(username="reader1")
    reader.set_password("my-own-password")
    reader.save()
    run = ModelRun.objects.get(name=DEMO_RUN)
    ModelRun.objects.filter(pk=run.pk).update(status="failed", error="Unexpected error: AssertionError: daemonic")
    capsys.readouterr()
    with django_capture_on_commit_callbacks() as queued:
        call_command("demo", "--setup-only", "--phantoms", "20")
    out = capsys.readouterr().out
    assert django_user_model.objects.get(username="coordinator").password == coordinator_hash  # sessions stay valid
    assert client.get("/datasets/").status_code == 200
    assert "reader1      (changed by its user)" in out and "coordinator  demo-coordinator" in out
    run.refresh_from_db()
    assert (run.status, run.error) == ("pending", "") and len(queued) == 1 and "Re-queued the failed run" in out
    # a run left running by a demo that was stopped mid-training is queued again as well
    ModelRun.objects.filter(pk=run.pk).update(status="running")
    with django_capture_on_commit_callbacks() as queued:
        call_command("demo", "--setup-only", "--phantoms", "20")
    assert ModelRun.objects.get(pk=run.pk).status == "pending" and len(queued) == 1
    ModelRun.objects.filter(pk=run.pk).update(status="succeeded")
    with django_capture_on_commit_callbacks() as queued:
        call_command("demo", "--setup-only", "--phantoms", "20")
    assert ModelRun.objects.get(pk=run.pk).status == "succeeded" and not queued
