"""The New run form: IG-CBIR from a finished classifier run of the same dataset, and each method's own
default metric (papers 001/003: Euclidean on raw features) unless the form asks for another."""

import pytest

from retrieval.models import ModelRun
from tests.factories import png_bytes, write_files
from tests.importing import run_import

FORM = {
    "backbone": "resnet18",
    "weights": "random",
    "epochs": 1,
    "lr": 0.001,
    "batch_size": 8,
    "negative": "No Finding",
}


@pytest.fixture
def dataset(db, tmp_path):
    return run_import(
        source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(8)}), name="web"
    ).dataset


@pytest.fixture
def classifier(dataset):
    return ModelRun.objects.create(
        dataset=dataset,
        name="cnn",
        method="densenet_cnn",
        status="succeeded",
        config={"task": "binary", "positive": ["Cardiomegaly", "Effusion"], "negative": ["No Finding"], "metric": "l2"},
    )


def _post(client, dataset, **fields):
    return client.post(f"/datasets/{dataset.pk}/runs/new/", {**FORM, **fields})


def test_igcbir_run_from_the_form_takes_the_classifier_task(
    client, dataset, classifier, coordinator, django_capture_on_commit_callbacks
):
    client.force_login(coordinator)
    page = client.get(f"/datasets/{dataset.pk}/runs/new/").content.decode()
    assert f'<option value="{classifier.pk}">' in page and 'name="input_saliency"' in page
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _post(
            client,
            dataset,
            name="ig",
            method="igcbir",
            classifier_run=classifier.pk,
            input_saliency="grad_cam",
            task="binary",
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = ModelRun.objects.get(name="ig")
    assert len(callbacks) == 1 and run.method == "igcbir" and run.status == "pending"
    assert run.config["classifier_run"] == classifier.pk and run.config["input_saliency"] == "grad_cam"
    assert run.config["positive"] == ["Cardiomegaly", "Effusion"] and run.config["negative"] == ["No Finding"]
    assert run.config["backbone"] == "densenet121" and run.config["metric"] == "l2" and run.config["features"] == "raw"


def test_igcbir_form_needs_a_finished_classifier_of_the_dataset(client, dataset, classifier, coordinator):
    client.force_login(coordinator)
    ModelRun.objects.filter(pk=classifier.pk).update(status="failed")
    response = _post(client, dataset, name="ig", method="igcbir", classifier_run=classifier.pk)
    assert response.status_code == 200 and not ModelRun.objects.filter(name="ig").exists()
    response = _post(client, dataset, name="ig", method="igcbir")
    assert "IG-CBIR needs a finished classifier run" in response.content.decode()
    assert not ModelRun.objects.filter(name="ig").exists()


@pytest.mark.parametrize(
    ("method", "metric", "expected"),
    [
        ("densenet_cnn", "", ("l2", "raw")),
        ("densenet_cnn", "cosine", ("cosine", "l2_normalised")),
        ("finetune", "", ("cosine", "l2_normalised")),
        ("finetune", "l2", ("l2", "l2_normalised")),
    ],
)
def test_form_keeps_the_method_default_metric(
    client, dataset, coordinator, method, metric, expected, django_capture_on_commit_callbacks
):
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False):
        response = _post(client, dataset, name="m", method=method, metric=metric, task="binary", positive="Effusion")
    assert response.status_code == 302, response.content.decode()[-2000:]
    config = ModelRun.objects.get(name="m").config
    assert (config["metric"], config["features"]) == expected


def test_unknown_input_saliency_and_raw_cosine_are_refused(dataset, classifier):
    from core.errors import ApplicationError
    from retrieval.runs.methods import config_validate

    with pytest.raises(ApplicationError, match="input_saliency must be"):
        config_validate(
            "igcbir", {"classifier_run": classifier.pk, "positive": ["Effusion"], "input_saliency": "occlusion"}
        )
    with pytest.raises(ApplicationError, match="need the l2 metric"):
        config_validate("densenet_cnn", {"positive": ["Effusion"], "metric": "cosine", "features": "raw"})
