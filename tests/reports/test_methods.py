"""Methods: model runs and provenance; a method that cannot rank some cases is reported, not fatal."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ApplicationError
from core.jobs import JobStatus
from reports.build import report_for_study
from reports.options import options_parse
from retrieval.models import Dataset, ModelRun
from tests.reports import independent as ind
from tests.studies.factories import make_run


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def _method(report, name):
    return next(m for m in report["methods"] if m["name"] == name)


def test_run_and_its_provenance_are_one_method(generate):
    g = generate(mode="choose_k", n_cases=6, n_readers=2, q=0.5)
    report = _report(g)
    assert [m["name"] for m in report["methods"]] == [g.run.name]
    assert _method(report, g.run.name) == {
        "key": g.run.name,
        "name": g.run.name,
        "source": "run",
        "run_id": g.run.pk,
        "available": True,
        "n_cases": 6,
        "reason": "",
    }


def test_run_without_embeddings_is_unavailable_with_the_reason(generate, tmp_path):
    g = generate(mode="rank_all", n_cases=5, n_readers=2, q=0.5)
    empty = ModelRun.objects.create(
        dataset=g.study.dataset,
        name="not-embedded",
        method="timm",
        status=JobStatus.SUCCEEDED,
        artefact_dir=str(tmp_path / "nothing"),
    )
    report = _report(g, n_resamples=50)
    m = _method(report, "not-embedded")
    assert m["available"] is False and m["n_cases"] == 0 and "no embeddings yet" in m["reason"]
    assert "not-embedded" not in report["ranking"]["compared"]
    assert empty.pk == m["run_id"]


def test_run_missing_some_images_is_scored_on_the_cases_it_can_rank(generate, tmp_path):
    g = generate(mode="rank_all", n_cases=8, n_readers=2, q=0.5, seed=2)
    keep = np.arange(8) >= 3  # the run has no embedding for the images of the first three cases
    ids = np.concatenate([g.query_ids[keep], g.image_ids[keep].ravel()])
    vectors = np.random.default_rng(1).normal(size=(len(ids), 4))
    run = make_run(g.study.dataset, tmp_path / "partial", ids.tolist(), vectors, name="partial")
    report = _report(g)
    m = _method(report, "partial")
    assert m["available"] and m["n_cases"] == 5 and "3 of 8 cases" in m["reason"]
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {int(i): n for n, i in enumerate(ids)}
    dist = np.array(
        [[1 - v[index[int(q)]] @ v[index[int(c)]] for c in row] for q, row in zip(g.query_ids[keep], g.image_ids[keep])]
    )
    truth = g.values[keep][..., 0].astype(int)
    got = report["ranking"]["compared"]["partial"]
    assert got["n_cases"] == 5
    assert got["metrics"]["ndcg@10"]["estimate"] == pytest.approx(ind.ndcg(ind.ranks_of(dist), truth, 10).mean())
    assert run.pk == m["run_id"]


def test_provenance_method_proposing_part_of_the_catalogue(generate):
    g = generate(mode="choose_k", n_cases=8, n_readers=2, q=0.5, partial_method=True)
    report = _report(g)
    m = _method(report, "bm25")
    assert m["source"] == "provenance" and m["n_cases"] == 4 and "did not propose every candidate" in m["reason"]
    got = report["choose_k"]["methods"]["bm25"]
    even = np.arange(8) % 2 == 0
    sel = g.values[even].astype(bool)
    chosen = ind.k_nearest(2.0 - g.distances[even], 5)
    assert got["n_cases"] == 4
    assert got["mean_reader_agreement"]["estimate"] == pytest.approx(
        np.mean([ind.percent(sel[..., r], chosen) for r in range(2)])
    )


def test_explicit_runs_and_unfinished_runs(generate, tmp_path):
    g = generate(mode="choose_k", n_cases=4, n_readers=2, q=0.5)
    failed = ModelRun.objects.create(dataset=g.study.dataset, name="crashed", method="timm", status=JobStatus.FAILED)
    assert "crashed" not in [m["name"] for m in _report(g)["methods"]]  # default: finished runs only
    report = _report(g, runs=str(failed.pk))
    assert _method(report, "crashed")["reason"] == "the run is failed, not finished"
    # the provenance still names the study's own run: it stays available as a provenance method
    assert _method(report, g.run.name)["source"] == "provenance"


def test_runs_of_another_dataset_are_refused(generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    other = ModelRun.objects.create(dataset=Dataset.objects.create(name="elsewhere"), name="x", method="timm")
    with pytest.raises(ApplicationError, match="not runs of this study's dataset"):
        _report(g, runs=f"{other.pk}")
    with pytest.raises(ApplicationError, match="whole numbers"):
        options_parse(runs="abc")
