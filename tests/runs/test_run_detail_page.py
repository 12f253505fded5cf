"""The run page: a run whose worker was lost can be resumed; every evaluation number is shown."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from core.errors import Conflict
from retrieval.ml.metrics import evaluate_retrieval
from retrieval.models import ModelRun
from retrieval.runs.splits import split_create
from tests.factories import png_bytes, write_files
from tests.importing import run_import


@pytest.fixture
def dataset(db, tmp_path):
    return run_import(
        source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(6)}), name="page"
    ).dataset


def _run(dataset, **fields) -> ModelRun:
    return ModelRun.objects.create(
        dataset=dataset, name=fields.pop("name", "r"), method="timm", config={"metric": "cosine"}, **fields
    )


def test_running_run_with_a_stale_heartbeat_shows_worker_lost_and_resume(
    client, dataset, coordinator, researcher, settings
):
    settings.JOB_STALE_SECONDS = 60
    beat = timezone.now() - timedelta(seconds=600)
    run = _run(dataset, status="running", stage="embedding", heartbeat_at=beat, progress_done=3, progress_total=6)
    client.force_login(researcher)  # sees that the worker was lost, cannot resume (coordinators' work)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert "worker lost — no heartbeat since " in html and ">Resume</button>" not in html
    client.force_login(coordinator)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert "worker lost — no heartbeat since " + timezone.localtime(beat).strftime("%Y-%m-%d %H:%M:%S") in html
    assert f'action="/runs/{run.pk}/resume/"' in html and ">Resume</button>" in html
    assert "data-job-progress" not in html  # nothing to poll: the page would wait forever


def test_running_run_with_a_fresh_heartbeat_polls_and_offers_no_resume(client, dataset, researcher, settings):
    settings.JOB_STALE_SECONDS = 60
    run = _run(dataset, status="running", stage="embedding", heartbeat_at=timezone.now() - timedelta(seconds=5))
    client.force_login(researcher)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert "worker lost" not in html and ">Resume</button>" not in html
    assert f'data-job-progress="/api/runs/{run.pk}/"' in html and 'data-reload-when-done="1"' in html


@pytest.mark.db_engine(
    "resuming is a compare-and-set UPDATE whose condition compares the heartbeat timestamp in "
    "SQL (SQLite compares stored text, PostgreSQL timestamps)"
)
def test_resuming_a_run_whose_worker_was_lost_queues_it_again(
    client, dataset, coordinator, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from retrieval import tasks

    settings.JOB_STALE_SECONDS = 60
    run = _run(dataset, status="running", stage="training", heartbeat_at=timezone.now() - timedelta(seconds=600))
    sent = []
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/runs/{run.pk}/resume/")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    run.refresh_from_db()
    assert run.status == "pending" and len(callbacks) == 1
    monkeypatch.setattr(tasks.run_execute, "apply_async", lambda **kw: sent.append(kw))
    callbacks[0]()
    assert sent == [{"kwargs": {"run_id": run.pk}}]
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert "worker lost" not in html and "data-job-progress" in html


def test_an_evaluation_whose_worker_was_lost_does_not_block_the_next(
    dataset, settings, django_capture_on_commit_callbacks
):
    from retrieval import tasks
    from retrieval.models import Evaluation
    from retrieval.runs.services import evaluation_request

    settings.JOB_STALE_SECONDS = 60
    run = _run(dataset, status="succeeded", split=split_create(dataset=dataset))
    lost = Evaluation.objects.create(
        run=run, options={"ks": [1]}, status="running", heartbeat_at=timezone.now() - timedelta(seconds=600)
    )
    live = Evaluation.objects.create(run=run, options={"ks": [1]}, status="running", heartbeat_at=timezone.now())
    with pytest.raises(Conflict, match="already has an evaluation"):
        evaluation_request(run=run, options={"ks": [3]})
    lost.refresh_from_db()
    assert lost.status == "failed" and "worker was lost" in lost.error  # recorded, not left running for ever
    Evaluation.objects.filter(pk=live.pk).update(status="succeeded")
    sent = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fresh = evaluation_request(run=run, options={"ks": [3]})
    assert fresh.status == "pending" and fresh.options["ks"] == [3]
    tasks.evaluation_execute.apply_async = lambda **kw: sent.append(kw)
    try:
        callbacks[0]()
    finally:
        del tasks.evaluation_execute.apply_async
    assert sent == [{"kwargs": {"evaluation_id": fresh.pk}}]


def test_run_page_shows_antihub_share_per_k_and_every_map_definition(client, dataset, researcher):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 3))
    result = evaluate_retrieval(rng.normal(size=(40, 6)), labels, rng.normal(size=40), ks=(1, 5), ap_definition="hits")
    result = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}
    result.update(part="test", labels=["A", "B", "C"], graded_label="w", ks=[1, 5])
    run = _run(dataset, status="succeeded", split=split_create(dataset=dataset), metrics={"retrieval": result})
    client.force_login(researcher)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    for k in (3, 5, 7, 11, 17):
        assert (
            f"<td>{k}</td><td>{result[f'hubness_skew@{k}']:.2f}</td><td>{result[f'antihub_share@{k}']:.3f}</td>" in html
        )
    # the chosen definition (hits) is the plain map@k row; the others are listed under their own names
    assert f'<td>map@5</td><td class="muted">AP / hits in the top k</td><td>{result["map@5"]:.3f}</td>' in html
    for definition, name in (("min_k_R", "min(k, R)"), ("R", "R (all relevant)"), ("k", "k")):
        value = result[f"map@5[{definition}]"]
        assert f'<td>map@5[{definition}]</td><td class="muted">AP / {name}</td><td>{value:.3f}</td>' in html
    assert "map@5[hits]" not in html
    assert f"r = {result['label_distance_correlation_r']:.3f}" in html and "Jaccard distance" in html
    assert f"r = {result['distance_correlation_r']:.3f}" in html


def test_the_run_api_says_when_the_worker_was_lost(client, dataset, researcher, settings):
    """The progress bar of an open run page stops polling (and reloads into Resume) on worker_lost."""
    settings.JOB_STALE_SECONDS = 60
    stale = _run(dataset, name="stale", status="running", heartbeat_at=timezone.now() - timedelta(seconds=600))
    fresh = _run(dataset, name="fresh", status="running", heartbeat_at=timezone.now() - timedelta(seconds=5))
    client.force_login(researcher)
    assert client.get(f"/api/runs/{stale.pk}/").json()["worker_lost"] is True
    assert client.get(f"/api/runs/{fresh.pk}/").json()["worker_lost"] is False


def test_run_page_lists_its_re_evaluations_with_their_outcome(client, dataset, researcher):
    from retrieval.models import Evaluation

    run = _run(dataset, status="succeeded", split=split_create(dataset=dataset))
    Evaluation.objects.create(
        run=run,
        options={"ks": [1, 3], "part": "test", "ap_definition": "min_k_R"},
        status="failed",
        error="Only 0 images of the test part have a value of 'w'",
    )
    Evaluation.objects.create(
        run=run,
        options={"ks": [5], "part": "val", "ap_definition": "hits"},
        status="running",
        progress_done=1,
        progress_total=4,
    )
    client.force_login(researcher)
    html = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="evaluations"' in html
    assert "k 1, 3 · test · mAP min_k_R" in html and "failed: Only 0 images of the test part" in html
    assert "k 5 · val · mAP hits" in html and "running 25%" in html
