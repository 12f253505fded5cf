"""The run commands work without the web UI: --help, --sync, JSON output, clear errors."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from retrieval.models import ModelRun

pytestmark = pytest.mark.ml

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
    report = json.loads(_call("evaluate_retrieval", str(run.pk), "--k", "1", "3", "--json", "--map-definition", "R"))
    assert report["ap_definition"] == "R" and "map@3" in report and "map@3[hits]" in report
    assert "precision@3_random" in report and "precision@5" not in report
    table = _call("evaluate_retrieval", str(run.pk), "--k", "1", "3")
    assert "AP@k over min_k_R" in table and "precision@3" in table


def test_search_with_a_file(phantom_dataset, tmp_path):
    from tests.factories import png_bytes

    _call("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "cli", "--sync", "--no-split")
    query = tmp_path / "q.png"
    query.write_bytes(png_bytes(7, size=96))
    out = _call("search", "cli", "--file", str(query), "--k", "3")
    assert len(out.strip().splitlines()) == 3


def test_unknown_dataset_and_bad_file_are_clear_errors(phantom_dataset, tmp_path):
    with pytest.raises(CommandError, match="No dataset named 'nope'"):
        _call("embed", "nope", *SMALL_ARGS, "--sync")
    _call("embed", phantom_dataset.name, *SMALL_ARGS, "--name", "cli", "--sync", "--no-split")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(CommandError, match="junk.png"):
        _call("search", "cli", "--file", str(junk))
    with pytest.raises(CommandError, match="no split"):
        _call("evaluate_retrieval", "cli")


def test_train_command_binary_task(phantom_dataset):
    out = _call("train", phantom_dataset.name, *SMALL_ARGS, "--task", "binary", "--positive", "Cardiomegaly",
                "--epochs", "1", "--name", "t", "--sync")
    assert "succeeded" in out
    run = ModelRun.objects.get(name="t")
    assert run.config["positive"] == ["Cardiomegaly"] and run.config["negative"] == ["No Finding"]
    assert len(run.history) == 1


def test_train_without_positive_labels_is_refused(phantom_dataset):
    with pytest.raises(CommandError, match="positive label"):
        _call("train", phantom_dataset.name, *SMALL_ARGS, "--task", "binary", "--sync")


def test_train_command_runs_a_papers_method(phantom_dataset):
    out = _call("train", phantom_dataset.name, *SMALL_ARGS, "--method", "densenet_cnn", "--positive", "Effusion",
                "--epochs", "1", "--saliency", "none", "--name", "cnn", "--sync")
    assert "succeeded" in out
    run = ModelRun.objects.get(name="cnn")
    assert run.method == "densenet_cnn" and run.config["backbone"] == "densenet121" and run.config["metric"] == "l2"
    out = _call("embed", phantom_dataset.name, "--method", "ssim", "--name", "ssim", "--sync")
    ssim = ModelRun.objects.get(name="ssim")
    assert ssim.status == "succeeded" and ssim.method == "ssim"


def test_regression_run_is_evaluated_on_binned_classes_and_graded_relevance(phantom_dataset):
    _call("train", phantom_dataset.name, *SMALL_ARGS, "--task", "regression", "--target", "ctr",
          "--bins", "0.45", "0.55", "--epochs", "1", "--saliency", "none", "--name", "ctr", "--sync")
    run = ModelRun.objects.get(name="ctr")
    metrics = run.metrics.get("retrieval") or {}
    assert run.status == "succeeded" and run.config["bins"] == [0.45, 0.55]
    assert metrics["labels"] == ["ctr bins [0.45, 0.55]"] and metrics["graded_label"] == "ctr"
    assert "precision@1" in metrics and "ndcg_graded@1" in metrics
