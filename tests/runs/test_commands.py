"""The run commands work without the web UI: --help, --sync, JSON output, clear errors.

The 60 phantoms are imported once for the module (tests/runs/conftest.py: module_phantoms)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from retrieval.models import Evaluation, ModelRun

pytestmark = pytest.mark.ml


@pytest.fixture
def phantom_dataset(module_phantoms):
    return module_phantoms


SMALL_ARGS = ["--backbone", "resnet18", "--weights", "random", "--resize", "72", "--crop", "64", "--batch-size", "16"]


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.parametrize("command", ["import_images", "train", "embed", "build_index", "search", "evaluate_retrieval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command(command, "--help")
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_embed_search_evaluate_sequence(phantom_dataset):
    out = _call("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "cli", "--sync")
    assert "succeeded" in out
    run = ModelRun.objects.get(name="cli")
    image_id = run.split.members.filter(part="test").first().image_id
    results = json.loads(_call("search", "cli", "--image", str(image_id), "--k", "4", "--json"))
    assert len(results) == 4 and image_id not in [r["image_id"] for r in results]
    assert all("Cardiomegaly" in r["labels"] for r in results)
    report = json.loads(
        _call("evaluate_retrieval", str(run.pk), "--k", "1", "3", "--json", "--map-definition", "R", "--sync")
    )
    assert report["ap_definition"] == "R" and "map@3" in report and "map@3[hits]" in report
    assert "precision@3_random" in report and "precision@5" not in report
    table = _call("evaluate_retrieval", str(run.pk), "--k", "1", "3", "--sync")
    assert "AP@k over min_k_R" in table and "precision@3" in table


def test_search_with_a_file(phantom_dataset, tmp_path):
    from tests.factories import png_bytes

    _call("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "cli", "--sync", "--no-split")
    query = tmp_path / "q.png"
    query.write_bytes(png_bytes(7, size=96))
    out = _call("search", "cli", "--file", str(query), "--k", "3", "--sync")
    assert len(out.strip().splitlines()) == 3


def test_unknown_dataset_and_bad_file_are_clear_errors(phantom_dataset, tmp_path):
    with pytest.raises(CommandError, match="No dataset named 'nope'"):
        _call("embed", "nope", *SMALL_ARGS, "--sync")
    _call("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "cli", "--sync", "--no-split")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(CommandError, match="junk.png"):
        _call("search", "cli", "--file", str(junk), "--sync")
    with pytest.raises(CommandError, match="no split"):
        _call("evaluate_retrieval", "cli")


def test_train_command_binary_task(phantom_dataset):
    out = _call(
        "train",
        phantom_dataset.name,
        *SMALL_ARGS,
        "--task",
        "binary",
        "--positive",
        "Cardiomegaly",
        "--epochs",
        "1",
        "--name",
        "t",
        "--sync",
    )
    assert "succeeded" in out
    run = ModelRun.objects.get(name="t")
    assert run.config["positive"] == ["Cardiomegaly"] and run.config["negative"] == ["No Finding"]
    assert len(run.history) == 1


def test_train_without_positive_labels_is_refused(phantom_dataset):
    with pytest.raises(CommandError, match="positive label"):
        _call("train", phantom_dataset.name, *SMALL_ARGS, "--task", "binary", "--sync")


def test_train_command_runs_a_papers_method(phantom_dataset):
    out = _call(
        "train",
        phantom_dataset.name,
        *SMALL_ARGS,
        "--method",
        "densenet_cnn",
        "--positive",
        "Effusion",
        "--epochs",
        "1",
        "--saliency",
        "none",
        "--name",
        "cnn",
        "--sync",
    )
    assert "succeeded" in out
    run = ModelRun.objects.get(name="cnn")
    assert run.method == "densenet_cnn" and run.config["backbone"] == "densenet121" and run.config["metric"] == "l2"
    out = _call("embed", phantom_dataset.name, "--method", "ssim", "--name", "ssim", "--sync")
    ssim = ModelRun.objects.get(name="ssim")
    assert ssim.status == "succeeded" and ssim.method == "ssim"


def test_regression_run_is_evaluated_on_binned_classes_and_graded_relevance(phantom_dataset):
    _call(
        "train",
        phantom_dataset.name,
        *SMALL_ARGS,
        "--task",
        "regression",
        "--target",
        "ctr",
        "--bins",
        "0.45",
        "0.55",
        "--epochs",
        "1",
        "--saliency",
        "none",
        "--name",
        "ctr",
        "--sync",
    )
    run = ModelRun.objects.get(name="ctr")
    metrics = run.metrics.get("retrieval") or {}
    assert run.status == "succeeded" and run.config["bins"] == [0.45, 0.55]
    assert metrics["labels"] == ["ctr bins [0.45, 0.55]"] and metrics["graded_label"] == "ctr"
    assert "precision@1" in metrics and "ndcg_graded@1" in metrics


def _embedded(dataset, name="cli", split=True):
    _call("embed", dataset.name, *SMALL_ARGS, "--name", name, "--sync", *([] if split else ["--no-split"]))
    return ModelRun.objects.get(name=name)


@pytest.mark.db_engine(
    "a re-evaluation writes its request and report into the run's JSON metrics (jsonb on PostgreSQL: no NaN, keys "
    "re-ordered), compared whole with what the command printed"
)
def test_evaluate_sync_runs_inline_without_queuing_and_reports_label_distance_correlation(
    phantom_dataset, django_capture_on_commit_callbacks
):
    run = _embedded(phantom_dataset)
    attempts = run.attempts
    with django_capture_on_commit_callbacks() as queued:
        report = json.loads(
            _call(
                "evaluate_retrieval",
                str(run.pk),
                "--k",
                "1",
                "--json",
                "--sync",
                "--labels",
                "Cardiomegaly",
                "Effusion",
            )
        )
    assert queued == []  # --sync sends nothing to the broker
    run.refresh_from_db()
    assert run.status == "succeeded" and run.stage == "done" and run.error == "" and run.attempts == attempts
    assert run.metrics["retrieval"] == report and report["labels"] == ["Cardiomegaly", "Effusion"]
    evaluation = run.evaluations.get()  # the evaluation is its own job; the run was never re-opened
    assert (evaluation.status, evaluation.error, evaluation.attempts) == ("succeeded", "", 1)
    assert evaluation.options["ks"] == [1] and evaluation.result == report
    assert report["label_distance"] == "jaccard" and -1 <= report["label_distance_correlation_r"] <= 1
    table = _call("evaluate_retrieval", str(run.pk), "--k", "1", "3", "--sync")
    assert "label distance correlation r" in table and "Jaccard distance" in table
    assert "map@3[hits]" in table and "AP / hits in the top k" in table and "antihub_share@3" in table


def test_evaluate_queued_is_a_job_on_the_cpu_queue_that_runs_once(phantom_dataset, django_capture_on_commit_callbacks):
    from config.celery import app
    from retrieval.tasks import evaluation_execute, run_evaluate

    run = _embedded(phantom_dataset)
    with django_capture_on_commit_callbacks() as queued:
        out = _call("evaluate_retrieval", str(run.pk), "--k", "1", "--no-wait")
    assert "queued" in out and len(queued) == 1
    evaluation = run.evaluations.get()
    assert evaluation.status == "pending" and ModelRun.objects.get(pk=run.pk).status == "succeeded"
    for task in (evaluation_execute, run_evaluate):
        assert app.amqp.router.route({}, task.name)["queue"].name == "cpu"
        assert task.acks_late and task.reject_on_worker_lost
    with pytest.raises(CommandError, match="already has an evaluation queued or running"):
        _call("evaluate_retrieval", str(run.pk), "--sync")  # no second evaluation while one is queued
    run_evaluate(run_id=run.pk)  # a message queued by the version before Evaluation jobs: the pending one runs
    evaluation_execute(evaluation_id=evaluation.pk)  # delivered again: the claim lets one run
    evaluation.refresh_from_db()
    assert evaluation.status == "succeeded" and evaluation.attempts == 1
    assert (evaluation.progress_done, evaluation.progress_total) == (1, 1)
    assert ModelRun.objects.get(pk=run.pk).metrics["retrieval"]["ks"] == [1] == evaluation.result["ks"]


def test_failed_evaluation_leaves_the_run_usable_with_the_message(phantom_dataset):
    run = _embedded(phantom_dataset)
    before = run.metrics["retrieval"]
    with pytest.raises(CommandError, match="have a value of 'no_such_number'"):
        _call("evaluate_retrieval", str(run.pk), "--graded-label", "no_such_number", "--sync")
    run.refresh_from_db()
    failed = run.evaluations.get()
    assert failed.status == "failed" and failed.error.startswith("Only 0 images")
    assert run.status == "succeeded" and run.error == ""
    assert run.metrics["retrieval"] == before  # the last good evaluation is kept
    _call("evaluate_retrieval", str(run.pk), "--k", "1", "--sync")
    run.refresh_from_db()
    assert run.error == "" and run.metrics["retrieval"]["ks"] == [1]


@pytest.mark.db_engine(
    "the search results (ids, ranks, float distances) round-trip through a JSON column and are compared exactly"
)
def test_search_file_sync_uses_the_upload_search_path_inline(
    phantom_dataset, tmp_path, settings, django_capture_on_commit_callbacks
):
    from retrieval.models import SearchRequest
    from tests.factories import png_bytes

    run = _embedded(phantom_dataset, split=False)
    query = tmp_path / "q.png"
    query.write_bytes(png_bytes(7, size=96))
    with django_capture_on_commit_callbacks() as queued:
        results = json.loads(_call("search", "cli", "--file", str(query), "--k", "5", "--json", "--sync"))
    assert queued == []
    req = SearchRequest.objects.get(run=run)
    assert req.status == "succeeded" and req.results == [
        {k: r[k] for k in ("image_id", "rank", "distance")} for r in results
    ]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert all(a["distance"] <= b["distance"] for a, b in zip(results, results[1:]))
    assert query.exists()  # the caller's file is never removed, only the worker's copy
    assert not any((settings.UPLOAD_ROOT / "search").iterdir())


def test_search_file_queued_goes_to_the_worker_as_a_search_request(
    phantom_dataset, tmp_path, django_capture_on_commit_callbacks
):
    from retrieval.models import SearchRequest
    from retrieval.tasks import search_execute
    from tests.factories import png_bytes

    run = _embedded(phantom_dataset, split=False)
    query = tmp_path / "q.png"
    query.write_bytes(png_bytes(3, size=96))
    with django_capture_on_commit_callbacks() as queued:
        out = _call("search", "cli", "--file", str(query), "--k", "3", "--no-wait")
    req = SearchRequest.objects.get(run=run)
    assert f"Search #{req.pk} queued" in out and len(queued) == 1 and req.status == "pending"
    search_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "succeeded" and len(req.results) == 3
    with pytest.raises(CommandError, match="nowhere.png: no such file"):
        _call("search", "cli", "--file", str(tmp_path / "nowhere.png"))


def test_waiting_inside_an_open_transaction_is_refused_before_anything_is_queued(phantom_dataset):
    # pytest-django runs this test inside a transaction, as a script calling the command in `atomic` would:
    # the job would only be sent on commit, so queue-and-wait would never end.
    run = _embedded(phantom_dataset)
    for args in (
        ("evaluate_retrieval", "cli"),
        ("build_index", "cli"),
        ("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "other"),
    ):
        with pytest.raises(CommandError, match="open database transaction.*--sync"):
            _call(*args)
    run.refresh_from_db()
    assert run.status == "succeeded" and not run.evaluations.exists()
    assert not ModelRun.objects.filter(name="other").exists()


def test_build_index_sync_adds_new_images_inline(phantom_dataset, tmp_path):
    from tests.factories import png_bytes, write_files
    from tests.importing import run_import

    run = _embedded(phantom_dataset, split=False)
    before = run.n_embedded
    run_import(
        source=write_files(tmp_path / "new", {"n1.png": png_bytes(91), "n2.png": png_bytes(92)}),
        dataset=phantom_dataset,
    )
    out = _call("build_index", "cli", "--sync")
    run.refresh_from_db()
    assert "2 new images embedded and indexed" in out and run.n_embedded == before + 2 and run.status == "succeeded"


def test_a_redelivered_run_message_of_a_finished_run_does_nothing_while_an_evaluation_waits(phantom_dataset):
    """acks_late redelivery of a finished run's run_execute: the run is not claimed again (its stages are not
    redone) and the queued evaluation, a job of its own, is untouched until its own task runs."""
    from retrieval.runs.evaluation import evaluation_execute
    from retrieval.runs.services import evaluation_request
    from retrieval.runs.stages import run_execute

    run = _embedded(phantom_dataset)
    embedded, attempts = dict(run.timings), run.attempts
    evaluation = evaluation_request(run=run, options={"ks": [2]}, enqueue=False)
    assert run_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert (run.status, run.attempts, run.timings) == ("succeeded", attempts, embedded)
    assert Evaluation.objects.get(pk=evaluation.pk).status == "pending"
    evaluation_execute(evaluation_id=evaluation.pk)
    run.refresh_from_db()
    assert "precision@2" in run.metrics["retrieval"] and "precision@5" not in run.metrics["retrieval"]
    assert run.timings["embed"] == embedded["embed"] and run.attempts == attempts
