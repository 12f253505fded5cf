"""Migration 0005: the re-evaluations a run recorded in its metrics (the run itself was the job) become
Evaluation rows, and a run that was the job of a queued re-evaluation is finished again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("retrieval", "0004_ratings")]
AFTER = [("retrieval", "0005_evaluations")]

pytestmark = pytest.mark.db_engine(
    "the migrations run back and forth on this engine's schema, and the data migration reads and writes JSON "
    "columns (jsonb on PostgreSQL)"
)


def _apps_at(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.mark.django_db(transaction=True)
def test_recorded_evaluation_requests_become_evaluation_jobs():
    old = _apps_at(BEFORE)
    Dataset, ModelRun = old.get_model("retrieval", "Dataset"), old.get_model("retrieval", "ModelRun")
    dataset = Dataset.objects.create(name="d", pseudonym_key="k")
    shown = {"precision@1": 0.5, "ks": [1]}
    done = ModelRun.objects.create(
        dataset=dataset,
        name="done",
        method="timm",
        status="succeeded",
        metrics={"retrieval": shown, "evaluation_request": {"options": {"ks": [1]}, "done": True, "error": ""}},
    )
    failed = ModelRun.objects.create(
        dataset=dataset,
        name="failed",
        method="timm",
        status="succeeded",
        error="Evaluation failed: Only 0 images",
        metrics={
            "retrieval": shown,
            "evaluation_request": {"options": {"ks": [2]}, "done": True, "error": "Only 0 images"},
        },
    )
    queued = ModelRun.objects.create(
        dataset=dataset,
        name="queued",
        method="timm",
        status="pending",
        stage="evaluating",
        metrics={"retrieval": shown, "evaluation_request": {"options": {"ks": [3]}, "done": False, "error": ""}},
    )
    plain = ModelRun.objects.create(
        dataset=dataset,
        name="plain",
        method="timm",
        status="failed",
        error="boom",
        metrics={"training": {"best_epoch": 2}},
    )

    new = _apps_at(AFTER)
    Run, Evaluation = new.get_model("retrieval", "ModelRun"), new.get_model("retrieval", "Evaluation")
    by_run = {e.run_id: e for e in Evaluation.objects.all()}
    assert set(by_run) == {done.pk, failed.pk, queued.pk}
    assert (by_run[done.pk].status, by_run[done.pk].options, by_run[done.pk].result) == (
        "succeeded",
        {"ks": [1]},
        shown,
    )
    assert (by_run[failed.pk].status, by_run[failed.pk].error) == ("failed", "Evaluation failed: Only 0 images")
    assert (by_run[queued.pk].status, by_run[queued.pk].options) == ("pending", {"ks": [3]})
    for run in Run.objects.filter(pk__in=[done.pk, failed.pk, queued.pk]):
        assert (run.status, run.error, run.metrics) == ("succeeded", "", {"retrieval": shown})
    assert Run.objects.filter(pk=queued.pk, stage="done").exists()
    untouched = Run.objects.get(pk=plain.pk)
    assert (untouched.status, untouched.error, untouched.metrics) == ("failed", "boom", {"training": {"best_epoch": 2}})

    back = _apps_at(BEFORE)  # and back again: each run's latest evaluation as its recorded request
    request = back.get_model("retrieval", "ModelRun").objects.get(pk=queued.pk).metrics["evaluation_request"]
    assert request == {"options": {"ks": [3]}, "done": False, "error": ""}
    _apps_at(MigrationExecutor(connection).loader.graph.leaf_nodes())  # leave the database migrated
