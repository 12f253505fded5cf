"""Paper 004 as a model run: readers' rating vectors (a rating table) train a metric net on the phantoms.

The rated phantoms are imported once for the module (tests/runs/conftest.py: module_data); each test
rolls back its own runs and changes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from core.errors import ApplicationError
from retrieval.imports import phantoms
from retrieval.models import ModelRun, Rating
from retrieval.runs import ranking
from retrieval.runs.ratings import rating_characteristics, rating_sets
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create, split_image_ids
from retrieval.runs.stages import run_execute
from tests.importing import run_import
from tests.runs.conftest import SMALL, make_phantom_dataset, module_data, module_data_delete, use_shared_folders

pytestmark = pytest.mark.django_db

CHARACTERISTICS = phantoms.RATED_CHARACTERISTICS


def write_rating_table(dataset, path, *, seed=0):
    """Three simulated readers rate each phantom 1–5 from its known findings (the demo's rating table)."""
    rows = []
    for image in dataset.images.order_by("pk").prefetch_related("labels"):
        labels = {lab.name: lab.value_num for lab in image.labels.all()}
        rows.append((image.source_name, labels["ctr"], labels["effusion_height"], labels["opacity"]))
    return phantoms.write_rating_csv(rows, path, seed=seed)


@pytest.fixture(scope="module")
def _rated(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("rated")
    with module_data(django_db_blocker, root):
        dataset = make_phantom_dataset(root / "p", n=150, seed=5, size=96)
        job = run_import(labels=write_rating_table(dataset, root / "ratings.csv"), dataset=dataset)
        assert job.status == "succeeded", job.report
        split = split_create(dataset=dataset, seed=1, fractions=(0.5, 0.2, 0.3))
    yield root, dataset, split
    module_data_delete(django_db_blocker)


@pytest.fixture
def rated(_rated, settings):
    """150 phantoms rated by three simulated readers, and a 50/20/30 split (made once for the module)."""
    root, dataset, split = _rated
    use_shared_folders(settings, root)
    return dataset, split


def _run(dataset, split, name, **config):
    run = run_create(
        dataset=dataset,
        name=name,
        method="rating_metric",
        split=split,
        enqueue=False,
        config={**SMALL, "lr": 3e-3, **config},
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def test_rating_tables_become_rating_sets(rated):
    dataset, _ = rated
    assert rating_characteristics(dataset) == sorted(CHARACTERISTICS)
    ids = list(dataset.images.order_by("pk").values_list("pk", flat=True)[:4])
    got_ids, sets = rating_sets(ids, ["heart_size", "opacity"])
    assert got_ids == ids and all(s.shape == (3, 2) for s in sets)
    first = Rating.objects.filter(image_id=ids[0]).order_by("rater")
    assert sets[0].tolist() == [[r.values["heart_size"], r.values["opacity"]] for r in first]


def test_configuration_errors_are_clear(rated, tmp_path):
    dataset, split = rated
    unrated = make_phantom_dataset(tmp_path / "u", n=12, size=64, name="unrated")
    with pytest.raises(ApplicationError, match="no reader ratings"):
        run_create(
            dataset=unrated,
            name="x",
            method="rating_metric",
            enqueue=False,
            split=split_create(dataset=unrated, seed=0),
        )
    with pytest.raises(ApplicationError, match="No ratings of 'malignancy'"):
        run_create(
            dataset=dataset,
            name="y",
            method="rating_metric",
            split=split,
            enqueue=False,
            config={"characteristics": ["malignancy"]},
        )
    with pytest.raises(ApplicationError, match="schedule"):
        run_create(
            dataset=dataset,
            name="z",
            method="rating_metric",
            split=split,
            enqueue=False,
            config={"schedule": [[2, 1.0, 0.0]]},
        )
    with pytest.raises(ApplicationError, match="schedule"):
        run_create(
            dataset=dataset,
            name="z",
            method="rating_metric",
            split=split,
            enqueue=False,
            config={"schedule": [[1, "lots", 0.0]]},
        )
    assert not ModelRun.objects.exists()


@pytest.mark.ml
def test_default_schedule_is_the_pure_modules_paper_schedule():
    from retrieval.ml.ratings import PAPER_SCHEDULE
    from retrieval.runs.methods import config_validate

    assert config_validate("rating_metric", {})["schedule"] == [list(s) for s in PAPER_SCHEDULE]


@pytest.mark.ml
def test_rating_metric_run_learns_distances_that_follow_the_readers(rated):
    dataset, split = rated
    size = {
        "resize": 54,
        "crop": 48,
    }  # 12 epochs at 48 px: r 0.34-0.40 over four run seeds, in half the time of 20 at 64
    untrained = run_create(
        dataset=dataset,
        name="random resnet18",
        method="timm",
        split=split,
        enqueue=False,
        config={**SMALL, **size, "metric": "l2"},
    )
    run_execute(run_id=untrained.pk)
    untrained.refresh_from_db()
    run = _run(dataset, split, "paper 004", epochs=12, schedule=[[1, 0.9, 0.1], [7, 0.5, 0.5]], **size)

    assert set(run.timings) == {"train", "embed", "index", "evaluate"}
    assert [h["epoch"] for h in run.history] == list(range(1, 13))
    assert run.history[-1]["regression"] < run.history[0]["regression"]
    assert (ranking.run_artefact_dir(run) / "checkpoints" / "last.pt").exists()
    assert run.config["characteristics"] == sorted(CHARACTERISTICS)

    # the recorded correlation is Pearson's r between L2 distances and paper 004's set distances
    m = run.metrics["ratings"]
    ids, vectors = ranking.run_vectors(run=run)
    pos = {int(i): n for n, i in enumerate(ids)}
    test_ids, sets = rating_sets(split_image_ids(split=split, part="test"), run.config["characteristics"])
    emb, target = [], []
    for a in range(len(test_ids)):
        for b in range(a + 1, len(test_ids)):
            emb.append(np.linalg.norm(vectors[pos[test_ids[a]]] - vectors[pos[test_ids[b]]]))
            d = np.linalg.norm(sets[a][:, None, :] - sets[b][None, :, :], axis=2)
            target.append(0.5 * d.min(axis=1).mean() + 0.5 * d.min(axis=0).mean())
    assert m["n_items"] == len(test_ids)
    assert m["distance_correlation_r"] == pytest.approx(stats.pearsonr(emb, target).statistic, abs=1e-5)

    # trained on the readers' ratings, it follows them better than the same untrained backbone
    baseline = untrained.metrics["ratings"]
    assert (
        m["distance_correlation_r"] > 0.25 and m["distance_correlation_p"] < 0.001
    )  # seen: 0.34-0.40 (untrained -0.04)
    assert m["distance_correlation_r"] > baseline["distance_correlation_r"] + 0.2
    assert "rating_rmse" not in baseline and m["rating_rmse"] > 0 and m["rating_rmse_train_mean"] > 0
    assert 0 < m["hubness_index"] <= 1


@pytest.mark.ml
def test_semi_supervised_run_labels_unrated_images_with_the_regressor(rated):
    dataset, split = rated
    train = split_image_ids(split=split, part="train")
    Rating.objects.filter(image_id__in=train[::2]).delete()  # half the training part unrated
    run = _run(dataset, split, "semi", epochs=2, regressor_epochs=2, semi_supervised=True)
    assert [(h["phase"], h["epoch"]) for h in run.history] == [
        ("regressor", 1),
        ("regressor", 2),
        ("metric", 3),
        ("metric", 4),
    ]
    assert run.metrics["training"]["pseudo_labelled"].startswith(f"{len(train[::2])} unrated")
    assert run.metrics["training"]["rated_train_images"] == len(train) - len(train[::2])
    assert (ranking.run_artefact_dir(run) / "checkpoints" / "regressor" / "last.pt").exists()


def test_train_command_and_run_form_create_rating_metric_runs(
    rated, client, coordinator, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    dataset, split = rated
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "train",
            dataset.name,
            "--method",
            "rating_metric",
            "--characteristics",
            "heart_size",
            "--semi-supervised",
            "--split",
            split.name,
            "--no-wait",
            stdout=open("/dev/null", "w"),
        )
    run = ModelRun.objects.get(method="rating_metric")
    assert run.config["characteristics"] == ["heart_size"] and run.config["semi_supervised"] is True
    assert (run.config["epochs"], run.config["lr"], run.config["embed_dim"]) == (60, 1e-3, 128)  # paper 004
    assert run.config["schedule"] == [[1, 0.9, 0.1], [21, 0.5, 0.5], [41, 0.0, 0.1]]

    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            f"/datasets/{dataset.pk}/runs/new/",
            {
                "name": "from the form",
                "method": "rating_metric",
                "backbone": "resnet18",
                "weights": "random",
                "metric": "l2",
                "split": split.pk,
                "epochs": 7,
                "lr": 0.002,
                "batch_size": 8,
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = ModelRun.objects.get(name="from the form")
    assert (run.config["epochs"], run.config["lr"]) == (7, 0.002)
    assert run.config["characteristics"] == sorted(CHARACTERISTICS)


def test_run_page_shows_the_rating_evaluation(rated, client, researcher):
    dataset, split = rated
    run = ModelRun.objects.create(
        dataset=dataset,
        name="done",
        method="rating_metric",
        status="succeeded",
        split=split,
        config={"metric": "l2"},
        metrics={
            "ratings": {
                "distance_correlation_r": 0.4321,
                "distance_correlation_p": 0.0002,
                "hubness_index": 0.8765,
                "rating_rmse": 0.9876,
                "rating_rmse_train_mean": 1.2344,
                "characteristics": ["effusion", "heart_size"],
                "n_items": 27,
            }
        },
    )
    client.force_login(researcher)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Ratings on the test part (27 rated images)" in page
    for shown in ("0.432", "&lt; 0.001", "0.877", "0.988", "1.234", "effusion, heart_size"):
        assert shown in page


@pytest.mark.ml
@pytest.mark.db_engine(
    "paper 004's rating evaluation is stored in the run's JSON metrics; the readers' ratings are JSON per row, "
    "imported in bulk (tests/runs/conftest.py: module_data commits them outside the test)"
)
def test_rating_evaluation_of_a_large_test_part_uses_a_recorded_sample(rated, monkeypatch):
    from retrieval.runs import stages as pipeline

    dataset, split = rated
    monkeypatch.setattr(pipeline, "RATING_EVAL_MAX", 10)
    run = run_create(
        dataset=dataset, name="timm", method="timm", split=split, enqueue=False, config={**SMALL, "metric": "l2"}
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    m = run.metrics["ratings"]
    assert m["n_items"] == 10 and m["note"].startswith("a random sample of 10 of the ")
