"""The papers' methods as model runs: the DenseNet CNN baseline's raw features, Euclidean distances and saliency
overlays, what the ensemble and IG-CBIR need, and the comparison table. What each trained method's run holds
(attention, ensemble and IG-CBIR embeddings, IG-CBIR's saliency inputs) is checked on the runs that
tests/runs/test_methods_learn.py trains once for its module."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from retrieval.models import ModelRun
from retrieval.runs import ranking
from retrieval.runs.ranking import saliency_path
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create
from tests.runs.conftest import SMALL, make_phantom_dataset, run_inline

pytestmark = pytest.mark.ml

TASK = {"task": "binary", "undersample": False, "epochs": 1, "lr": 1e-3, "saliency_max": 3}


@pytest.fixture
def dataset(db, tmp_path):
    return make_phantom_dataset(tmp_path / "p", n=40, size=64)


def _run(dataset, name, method, split, **cfg):
    return run_inline(dataset, name, method, split, {**SMALL, **cfg})


def test_densenet_cnn_uses_euclidean_and_stores_saliency_overlays(dataset, client, researcher, reader):
    split = split_create(dataset=dataset)
    run = _run(dataset, "cnn", "densenet_cnn", split, positive=["Cardiomegaly"], **TASK)
    assert run.config["backbone"] == "densenet121" and run.config["metric"] == "l2" and run.config["features"] == "raw"
    ids, vectors = ranking.run_vectors(run=run)
    assert vectors.shape[1] == 1024  # DenseNet-121's penultimate features
    # Raw features (papers 001/003), not unit vectors: search distances are their Euclidean distances.
    import numpy as np

    from retrieval.runs.index import search_by_image

    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    hits = search_by_image(run=run, image_id=int(ids[0]), k=5)
    d = np.linalg.norm(vectors - vectors[0], axis=1)
    assert [h["distance"] for h in hits] == pytest.approx(np.sort(d)[1:6].tolist(), rel=1e-3, abs=1e-4)
    assert d[[list(ids).index(h["image_id"]) for h in hits]] == pytest.approx(np.sort(d)[1:6], rel=1e-3, abs=1e-4)
    test_ids = list(split.members.filter(part="test").values_list("image_id", flat=True))[:3]
    assert all(saliency_path(run, i).read_bytes()[:4] == b"\x89PNG" for i in test_ids)
    client.force_login(reader)
    assert client.get(f"/runs/{run.pk}/saliency/{test_ids[0]}.png").status_code == 403
    client.force_login(researcher)
    assert client.get(f"/runs/{run.pk}/saliency/{test_ids[0]}.png").status_code == 200
    assert f"/runs/{run.pk}/saliency/{test_ids[0]}.png" in client.get(f"/images/{test_ids[0]}/").content.decode()


def test_ensemble_needs_two_runs(dataset):
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError, match="at least two"):
        run_create(dataset=dataset, name="e", method="ensemble", config={"runs": [1]}, enqueue=False)


def test_comparison_table_lists_every_method_beside_random(dataset):
    split = split_create(dataset=dataset, fractions=(0.5, 0.2, 0.3))  # 12 test queries: k = 5 fits
    _run(dataset, "timm", "timm", split)
    _run(dataset, "cnn", "densenet_cnn", split, positive=["Cardiomegaly"], **{**TASK, "saliency": ""})
    ModelRun.objects.create(dataset=dataset, name="broken", method="timm", status="failed")
    out = StringIO()
    call_command("compare_methods", dataset.name, "--k", "1", "5", "--json", stdout=out)
    table = json.loads(out.getvalue())
    assert [r["name"] for r in table["rows"]] == ["timm", "cnn"]
    cell = table["rows"][0]["cells"]["precision@5"]
    assert set(cell) == {"value", "random", "p"} and 0 <= cell["random"] <= 1
    text = StringIO()
    call_command("compare_methods", dataset.name, stdout=text)
    assert "densenet_cnn" in text.getvalue() and "(random)" in text.getvalue()


def test_igcbir_needs_a_classifier_run(dataset):
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError, match="classifier run"):
        run_create(
            dataset=dataset,
            name="ig",
            method="igcbir",
            config={"positive": ["Cardiomegaly"]},
            split=split_create(dataset=dataset),
            enqueue=False,
        )
