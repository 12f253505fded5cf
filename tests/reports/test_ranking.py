"""Ranking reports (papers 001/003) equal scikit-learn's nDCG (exponential gain) and scipy's τ and ρ."""

from __future__ import annotations

import numpy as np
import pytest

from reports.build import report_for_study
from reports.options import options_parse
from tests.reports import independent as ind


@pytest.fixture
def study(generate):
    # the ground truth is the SECOND reader by name: the report must not silently use the first
    return generate(mode="rank_all", n_cases=25, n_candidates=10, n_readers=3, q=0.5, seed=5, ground_truth=1)


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_methods_and_readers_scored_against_the_ground_truth_reader(study):
    s = _report(study, p="3,5,10")["ranking"]
    ranks = study.values.astype(int)
    truth = ranks[..., 1]
    assert s["ground_truth"] == study.readers[1].username and s["ground_truth_source"] == "set on the study"
    model = ind.ranks_of(study.distances)
    compared = {
        study.run.name: model,
        study.readers[0].username: ranks[..., 0],
        study.readers[2].username: ranks[..., 2],
    }
    assert set(s["compared"]) == set(compared)  # the ground truth is not compared with itself
    for name, method in compared.items():
        got = s["compared"][name]["metrics"]
        for p in (3, 5, 10):
            assert got[f"ndcg@{p}"]["estimate"] == pytest.approx(ind.ndcg(method, truth, p).mean())
        assert got["kendall_tau"]["estimate"] == pytest.approx(ind.kendall(method, truth).mean())
        assert got["spearman_rho"]["estimate"] == pytest.approx(ind.spearman(method, truth).mean())
    per_case = s["per_case"]["values"][study.run.name]["ndcg@10"]
    assert per_case == pytest.approx(ind.ndcg(model, truth, 10).tolist())


def test_inter_rater_band_and_random_baseline(study):
    s = _report(study)["ranking"]
    ranks = study.values.astype(int)
    others = [ind.ndcg(ranks[..., r], ranks[..., 1], 10).mean() for r in (0, 2)]
    assert s["inter_rater_band"]["ndcg@10"] == pytest.approx([min(others), max(others)])
    assert s["other_readers_mean"]["ndcg@10"]["estimate"] == pytest.approx(np.mean(others))
    # a random order scores about 0.70 at N = 10 (papers README); check against simulation too
    assert s["random"]["ndcg@10"] == pytest.approx(0.698, abs=0.001)
    rng = np.random.default_rng(0)
    perms = np.argsort(rng.random((4000, 10)), axis=1) + 1
    truth = np.tile(np.arange(1, 11), (4000, 1))
    assert ind.ndcg(perms, truth, 3).mean() == pytest.approx(s["random"]["ndcg@3"], abs=0.01)


def test_first_reader_is_the_ground_truth_when_none_is_set(generate):
    g = generate(mode="rank_all", n_cases=5, n_readers=2, q=0.5)
    s = _report(g)["ranking"]
    assert s["ground_truth"] == g.readers[0].username
    assert "none set" in s["ground_truth_source"]


def test_perfect_readers_score_one(generate):
    g = generate(mode="rank_all", n_cases=6, n_readers=2, q=1.0)
    s = _report(g)["ranking"]
    for c in s["compared"].values():
        assert c["metrics"]["ndcg@10"]["estimate"] == pytest.approx(1.0)
        assert c["metrics"]["kendall_tau"]["estimate"] == pytest.approx(1.0)


def test_single_reader_ranking_study(generate):
    g = generate(mode="rank_all", n_cases=6, n_readers=1, q=0.5)
    s = _report(g)["ranking"]
    assert list(s["compared"]) == [g.run.name] and s["inter_rater_band"] == {}
    truth = g.values[..., 0].astype(int)
    assert s["compared"][g.run.name]["metrics"]["ndcg@3"]["estimate"] == pytest.approx(
        ind.ndcg(ind.ranks_of(g.distances), truth, 3).mean()
    )
