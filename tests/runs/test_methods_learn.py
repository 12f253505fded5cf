"""Every trained method of the papers learns, and beats random retrieval: each trained once, checked several ways.

The methods are the demo's (readerstudy.demo.DEMO_METHOD_RUNS, trained by `demo_methods_train` as
`manage.py demo --methods` trains them: ResNet-18 fine-tuned per finding (paper 000), the DenseNet-121 CNN
(001/003), the dual-attention DenseNet-121 (003), IG-CBIR on the classifier's Deep Taylor maps (001/003) and
the per-finding ensemble (000)), with their own settings, on a collection small networks learn from in a few
epochs: 80 blob images (tests/runs/conftest.py: make_blob_dataset) whose findings `Top` and `Large` stand
in for the demo's Cardiomegaly and Effusion. Random initialisation, 64 px, 4 epochs, one thread: about a
minute for all six runs, made once for the module (tests/runs/conftest.py: module_data).

Two claims, each able to fail on its own: every network learns its task (its training loss falls below 0.8 of
the first epoch's; measured 0.005-0.35 of it, while the same runs with a learning rate of 0 stay at 0.97-1.0),
and every method's embedding, index and evaluation retrieve by the findings better than random (P@5, t-test
p < 0.05; measured P@5 0.67-1.0 against 0.39-0.49 at random, p < 0.001). The blobs are easy on purpose: even an
untrained DenseNet's features find `Top`, so the second claim alone would not show learning; the first does.

On the demo phantoms themselves the DenseNet methods need more images than a test can train on (on 80
phantoms, or at 48 px, some are at chance level); that comparison, at the demo's finding and size, is the
benchmark benchmarks/bench_methods.py (`make bench`), which reports each method's P@k and mAP against random.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command

from readerstudy import building, demo
from readerstudy import services as study_services
from readerstudy.models import AnswerMode
from retrieval.runs import ranking
from retrieval.runs.data import training_targets
from retrieval.runs.splits import split_create, split_image_ids
from tests.conftest import limit_threads
from tests.runs.conftest import make_blob_dataset, module_data, module_data_delete, use_shared_folders

pytestmark = [pytest.mark.ml, pytest.mark.django_db]

N_IMAGES, EPOCHS, CROP = 80, 4, 64
FINDINGS = {"Cardiomegaly": "Top", "Effusion": "Large", "ctr": "height"}  # the demo's labels → the blobs'


def _blob_findings(value):
    if isinstance(value, str):
        return FINDINGS.get(value, value)
    if isinstance(value, list):
        return [_blob_findings(v) for v in value]
    if isinstance(value, dict):
        return {k: _blob_findings(v) for k, v in value.items()}
    return value


def method_runs() -> tuple:
    """The demo's method runs on the blobs' findings. The ensemble is judged on both of its members' findings:
    a per-finding ensemble retrieves by every finding it holds (on one of them alone, the other member's
    features are noise, which the benchmark shows on the phantoms)."""
    runs = []
    for name, method, config in demo.DEMO_METHOD_RUNS:
        config = _blob_findings(config)
        if method == "ensemble":
            config["eval_labels"] = ["Top", "Large"]
        runs.append((name, method, config))
    return tuple(runs)


@pytest.fixture(scope="module")
def _trained(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    limit_threads(torch=True)
    with module_data(django_db_blocker, root), mock.patch.object(demo, "DEMO_METHOD_RUNS", method_runs()):
        dataset = make_blob_dataset(root / "blobs", n=N_IMAGES, seed=0)
        # 50/20/30: 24 test queries, so that "beats random" is a significance test with some power.
        split = split_create(dataset=dataset, name="eval", seed=1, fractions=(0.5, 0.2, 0.3))
        runs = demo.demo_methods_train(dataset=dataset, split=split, epochs=EPOCHS, resize=CROP + 8, crop=CROP)
    yield root, dataset, split, runs
    module_data_delete(django_db_blocker)


@pytest.fixture
def trained(_trained, settings):
    """(dataset, split, runs in DEMO_METHOD_RUNS order); the test's settings point at their files."""
    root, dataset, split, runs = _trained
    use_shared_folders(settings, root)
    assert dataset.runs.filter(status="succeeded").count() == len(runs), "the module's runs are gone"
    return dataset, split, runs


def _run(runs, method: str, finding: str | None = None):
    return next(r for r in runs if r.method == method and (finding is None or r.config["positive"] == [finding]))


def test_every_trained_method_beats_random_retrieval(trained):
    dataset, split, runs = trained
    assert [r.method for r in runs] == ["finetune", "finetune", "densenet_cnn", "attention", "igcbir", "ensemble"]
    out = StringIO()
    call_command("compare_methods", dataset.name, "--split", split.name, "--k", "5", "10", "--json", stdout=out)
    table = {row["run"]: row for row in json.loads(out.getvalue())["rows"]}
    assert set(table) == {r.pk for r in runs}
    for run in runs:
        assert table[run.pk]["n_queries"] == len(split_image_ids(split=split, part="test")) >= 20
        cell = table[run.pk]["cells"]["precision@5"]
        assert cell["value"] > cell["random"] and cell["p"] < 0.05, (run.name, cell)


def test_every_trained_network_learns_its_task(trained):
    _, _, runs = trained
    trained_runs = [r for r in runs if r.method != "ensemble"]  # the ensemble trains nothing: its members do
    assert len(trained_runs) == 5
    for run in trained_runs:
        losses = [h["loss"] for h in run.history]
        assert len(losses) == EPOCHS and losses[-1] < 0.8 * losses[0], (run.name, losses)


def test_each_run_builds_the_nearest_and_farthest_catalogues_of_a_reader_study(trained):
    """Paper 000's catalogues (5 nearest + 5 farthest) under every method's run."""
    dataset, split, runs = trained
    for run in runs:
        study = study_services.study_create(name=run.name, dataset=dataset, mode=AnswerMode.CHOOSE_K, k=5)
        building.study_build_cases(
            study=study,
            builder=building.KNN_FARTHEST,
            config={"n_queries": 4, "run": run.pk, "k": 5, "split": split.pk},
            seed=3,
        )
        assert study.cases.count() == 4
        for case in study.cases.all():
            provenance = [c.provenance[0] for c in case.candidates.all()]
            assert sorted(p["set"] for p in provenance) == ["farthest"] * 5 + ["nearest"] * 5, run.name
            assert {p["run"] for p in provenance} == {run.pk}


def test_finetuned_run_records_history_checkpoints_timings_and_overlays(trained):
    _, split, runs = trained
    run = _run(runs, "finetune", "Top")
    assert run.status == "succeeded", run.error
    assert [h["epoch"] for h in run.history] == list(range(1, EPOCHS + 1))
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    folder = Path(run.artefact_dir)
    assert (folder / "model.safetensors").exists() and (folder / "checkpoints" / "last.pt").exists()
    assert set(run.timings) == {"train", "saliency", "embed", "index", "evaluate"}
    test_ids = split_image_ids(split=split, part="test")
    overlays = [ranking.saliency_path(run, i) for i in test_ids]
    assert overlays and all(o.exists() and o.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for o in overlays)  # Grad-CAM
    assert run.live["epoch"] == EPOCHS and run.progress_percent == 100


def test_finetuned_run_evaluates_itself_on_the_test_split_with_graded_relevance(trained):
    _, _, runs = trained
    m = _run(runs, "finetune", "Top").metrics["retrieval"]
    assert m["part"] == "test" and m["labels"] == ["Top"] and m["graded_label"] == "height"
    assert m["precision@5"] > m["precision@5_random"] and m["precision@5_p"] < 0.05, m
    assert m["ndcg_graded@5"] > m["ndcg_graded@5_random"], m


def test_binary_targets_follow_the_task_definition(trained):
    from retrieval.models import Label

    _, split, runs = trained
    run = _run(runs, "finetune", "Top")
    assert (run.config["positive"], run.config["negative"]) == (["Top"], ["No Finding"])
    ids = split_image_ids(split=split, part="train")
    kept, y = training_targets(run, ids, undersample=False)
    for image_id, target in zip(kept, y[:, 0]):
        top = Label.objects.get(image_id=image_id, name="Top").value_num
        normal = Label.objects.get(image_id=image_id, name="No Finding").value_num
        assert (top == 1 and target == 1) or (normal == 1 and top == 0 and target == 0)
    assert len(kept) < len(ids)  # images with the other finding only are neither positive nor negative


def test_dual_attention_densenet_trains_and_embeds(trained):
    _, _, runs = trained
    run = _run(runs, "attention")
    _, vectors = ranking.run_vectors(run=run)
    assert vectors.shape == (N_IMAGES, 1024) and len(run.history) == EPOCHS  # DenseNet-121's 1024 features


def test_ensemble_concatenates_the_per_finding_models(trained):
    _, _, runs = trained
    members = [_run(runs, "finetune", "Top"), _run(runs, "finetune", "Large")]
    ensemble = _run(runs, "ensemble")
    assert ensemble.config["runs"] == [m.pk for m in members]
    ids, vectors = ranking.run_vectors(run=ensemble)
    parts = [ranking.run_vectors(run=m) for m in members]
    assert all(np.array_equal(ids, i) for i, _ in parts)
    assert vectors.shape == (N_IMAGES, sum(v.shape[1] for _, v in parts))


def test_igcbir_trains_a_second_network_on_the_classifier_saliency(trained):
    _, _, runs = trained
    classifier, ig = _run(runs, "finetune", "Top"), _run(runs, "igcbir")
    assert ig.config["classifier_run"] == classifier.pk and ig.config["input_saliency_used"] == "deep_taylor"
    maps = [np.load(p) for p in sorted((ranking.run_artefact_dir(ig) / "saliency_inputs").glob("*.npy"))]
    assert len(maps) == N_IMAGES
    assert all(m.shape == (3, CROP, CROP) and np.allclose(m[0], m[1]) for m in maps)  # one map copied to 3 channels
    assert max(float(np.abs(m).max()) for m in maps) == pytest.approx(1.0, abs=1e-3)  # / max |value|
    _, vectors = ranking.run_vectors(run=ig)
    assert vectors.shape == (N_IMAGES, 1024) and set(ig.timings) >= {"saliency_inputs", "train", "embed"}
