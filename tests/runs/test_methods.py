"""The papers' methods as model runs: DenseNet CNN baseline with saliency overlays, dual-attention
DenseNet, per-finding ensembles, and the comparison table."""

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


def test_dual_attention_densenet_trains_and_embeds(dataset):
    run = _run(dataset, "att", "attention", split_create(dataset=dataset), positive=["Effusion"], **TASK)
    ids, vectors = ranking.run_vectors(run=run)
    assert vectors.shape == (40, 1024) and len(run.history) == 1


def test_ensemble_concatenates_the_per_finding_models(dataset):
    split = split_create(dataset=dataset)
    a = _run(dataset, "cardio", "finetune", split, positive=["Cardiomegaly"], **{**TASK, "saliency": ""})
    b = _run(dataset, "effusion", "finetune", split, positive=["Effusion"], **{**TASK, "saliency": ""})
    ens = _run(dataset, "ens", "ensemble", split, runs=[a.pk, b.pk])
    _, va = ranking.run_vectors(run=a)
    _, ve = ranking.run_vectors(run=ens)
    assert ve.shape == (40, 2 * va.shape[1])


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


def test_igcbir_trains_a_second_network_on_the_classifier_saliency(dataset):
    split = split_create(dataset=dataset)
    classifier = _run(dataset, "cnn", "densenet_cnn", split, positive=["Cardiomegaly"], **{**TASK, "saliency": ""})
    ig = _run(
        dataset,
        "ig",
        "igcbir",
        split,
        classifier_run=classifier.pk,
        positive=["Cardiomegaly"],
        **{**TASK, "saliency": ""},
    )
    import numpy as np

    folder = ranking.run_artefact_dir(ig) / "saliency_inputs"
    maps = [np.load(p) for p in sorted(folder.glob("*.npy"))]
    assert len(maps) == 40
    assert all(m.shape == (3, 64, 64) and np.allclose(m[0], m[1]) for m in maps)  # one map copied to 3 channels
    assert max(float(np.abs(m).max()) for m in maps) == pytest.approx(1.0, abs=1e-3)  # / max |value|
    ids, vectors = ranking.run_vectors(run=ig)
    assert vectors.shape == (40, 1024) and set(ig.timings) >= {"saliency_inputs", "train", "embed"}


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
