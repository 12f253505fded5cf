"""search --file and evaluate_retrieval queue to a real worker (embedded broker) and wait with a progress bar."""

import functools
import json
from io import StringIO

import pytest
from django.core.management import call_command

from retrieval.models import ModelRun, SearchRequest
from tests.factories import png_bytes
from tests.runs.conftest import make_phantom_dataset

pytestmark = [
    pytest.mark.ml,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_engine(
        "the command waits on a job row that a worker process updates and commits on the same database"
    ),
]

SMALL_ARGS = ["--backbone", "resnet18", "--resize", "72", "--crop", "64", "--batch-size", "16"]


def _call(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def bounded_wait(monkeypatch):
    """The commands wait without limit; a broken worker must fail the test, not hang it."""
    import core.cli

    monkeypatch.setattr(core.cli, "wait_for_job", functools.partial(core.cli.wait_for_job, timeout=240))


def test_evaluate_and_search_file_through_the_worker_match_sync(start_worker, tmp_path, bounded_wait, settings):
    from retrieval.ml.backbones import create_backbone, save_weights

    dataset = make_phantom_dataset(tmp_path / "p", n=30, size=64)
    # A checkpoint file, not --weights random: the worker must build the very model the embeddings came from.
    settings.WEIGHTS_DIR = tmp_path / "checkpoints"  # where checkpoints are named from (the worker's too)
    settings.WEIGHTS_DIR.mkdir()
    save_weights(create_backbone("resnet18", weights="random"), settings.WEIGHTS_DIR / "resnet18.safetensors")
    _call("embed", dataset.name, *SMALL_ARGS, "--weights", "resnet18.safetensors", "--name", "cli", "--sync")
    run = ModelRun.objects.get(name="cli")
    inline = json.loads(_call("evaluate_retrieval", "cli", "--k", "1", "3", "--json", "--sync")[0])
    query = tmp_path / "q.png"
    query.write_bytes(png_bytes(5, size=80))
    inline_hits = json.loads(_call("search", "cli", "--file", str(query), "--k", "4", "--json", "--sync")[0])

    worker = start_worker("filesystem://localhost/", roles=("cpu",))
    out, err = _call("evaluate_retrieval", "cli", "--k", "1", "3", "--json")
    queued = json.loads(out)
    assert "succeeded" in err and "100%" in err  # the progress bar of the worker's job
    assert queued == inline  # the same numbers, computed by the worker
    done = ModelRun.objects.get(pk=run.pk)
    assert done.status == "succeeded" and done.evaluations.order_by("-pk").first().status == "succeeded"
    assert "evaluation_execute" in worker.output()

    out, err = _call("search", "cli", "--file", str(query), "--k", "4", "--json")
    hits = json.loads(out)
    assert [(h["rank"], h["image_id"]) for h in hits] == [(h["rank"], h["image_id"]) for h in inline_hits]
    assert [h["distance"] for h in hits] == pytest.approx([h["distance"] for h in inline_hits], abs=1e-4)
    assert SearchRequest.objects.filter(run=run, status="succeeded").count() == 2
    assert "search_execute" in worker.output() and query.exists()
