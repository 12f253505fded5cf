"""Runs and splits are coordinators' work; a run's weights come only from WEIGHTS_DIR (issue 12, Medium 9).

Researchers read runs and search; they neither start nor resume runs nor create splits, on the pages or
through the API. A `weights` value outside the checkpoint folder is refused with one message whether or not
the file exists, so the API is no oracle for the server's files.
"""

from __future__ import annotations

import pytest

from core.errors import ApplicationError
from retrieval.models import ModelRun, Split
from retrieval.runs.methods import WEIGHTS_REFUSED, config_validate, weights_checked, weights_source
from tests.conftest import client_for
from tests.factories import png_bytes, write_files
from tests.importing import run_import

pytestmark = pytest.mark.django_db

FORM = {
    "name": "web",
    "method": "timm",
    "backbone": "resnet18",
    "weights": "random",
    "metric": "cosine",
    "epochs": 1,
    "lr": 0.001,
    "batch_size": 8,
}


@pytest.fixture
def dataset(tmp_path):
    return run_import(source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(6)})).dataset


@pytest.fixture
def failed_run(dataset):
    return ModelRun.objects.create(
        dataset=dataset, name="f", method="timm", status="failed", config={"metric": "cosine", "weights": "random"}
    )


@pytest.fixture
def weights_dir(settings, tmp_path):
    settings.WEIGHTS_DIR = tmp_path / "checkpoints"
    settings.WEIGHTS_DIR.mkdir()
    (settings.WEIGHTS_DIR / "chest.pth").write_bytes(b"x")
    return settings.WEIGHTS_DIR


def test_researchers_cannot_start_or_resume_runs_or_create_splits(
    client, researcher, coordinator, dataset, failed_run, django_capture_on_commit_callbacks
):
    c = client_for(client, researcher)
    assert c.get(f"/datasets/{dataset.pk}/runs/new/").status_code == 403
    assert c.post(f"/datasets/{dataset.pk}/runs/new/", FORM).status_code == 403
    assert c.post(f"/runs/{failed_run.pk}/resume/").status_code == 403
    api = {"content_type": "application/json"}
    assert c.post(f"/api/datasets/{dataset.pk}/runs/create/", {"name": "a", "method": "timm"}, **api).status_code == 403
    assert c.post(f"/api/datasets/{dataset.pk}/splits/create/", {}, **api).status_code == 403
    assert c.post(f"/api/runs/{failed_run.pk}/resume/").status_code == 403
    assert ModelRun.objects.count() == 1 and not Split.objects.exists()
    failed_run.refresh_from_db()
    assert failed_run.status == "failed"
    pages = c.get(f"/datasets/{dataset.pk}/runs/").content.decode() + c.get(f"/runs/{failed_run.pk}/").content.decode()
    assert "/runs/new/" not in pages and ">Resume</button>" not in pages  # nothing offered that would be refused

    c = client_for(client, coordinator)
    with django_capture_on_commit_callbacks(execute=False):
        assert c.post(f"/api/datasets/{dataset.pk}/splits/create/", {}, **api).status_code == 201
        assert c.post(f"/api/runs/{failed_run.pk}/resume/").status_code == 202
        assert c.post(f"/datasets/{dataset.pk}/runs/new/", FORM).status_code == 302
    assert ">Resume</button>" not in c.get(f"/runs/{failed_run.pk}/").content.decode()  # now pending


def test_weights_come_only_from_the_checkpoint_folder(weights_dir, tmp_path):
    outside = tmp_path / "secret.pth"
    outside.write_bytes(b"x")
    (weights_dir / "link.pth").symlink_to(outside)
    assert weights_checked("pretrained") == "pretrained" and weights_checked("random") == "random"
    assert weights_checked("chest.pth") == "chest.pth"
    assert weights_checked(str(weights_dir / "chest.pth")) == "chest.pth"  # stored by its name in the folder
    assert weights_source("chest.pth") == str(weights_dir.resolve() / "chest.pth")
    for value in [str(outside), "/etc/passwd", "/nonexistent.pth", "../secret.pth", "link.pth", "missing.pth", ""]:
        with pytest.raises(ApplicationError) as refused:
            weights_checked(value)
        assert refused.value.message == WEIGHTS_REFUSED  # one message: exists or not, nothing is told
    assert config_validate("timm", {"weights": "chest.pth"})["weights"] == "chest.pth"


def test_the_api_answers_the_same_for_an_existing_and_a_missing_server_file(client, coordinator, dataset, weights_dir):
    c = client_for(client, coordinator)
    answers = []
    for i, path in enumerate(["/etc/passwd", "/etc/no-such-file-here"]):
        response = c.post(
            f"/api/datasets/{dataset.pk}/runs/create/",
            {"name": f"w{i}", "method": "timm", "config": {"weights": path}},
            content_type="application/json",
        )
        assert response.status_code == 400
        answers.append(response.json())
    assert answers[0] == answers[1] and "/etc" not in str(answers[0])
    assert not ModelRun.objects.exists()
