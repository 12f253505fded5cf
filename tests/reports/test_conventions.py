"""Every convention the report applies is stated in its JSON and its tables, next to the numbers (issue 14.3)."""

from __future__ import annotations

import numpy as np
import pytest

from reports import stats as S
from reports.build import report_for_study
from reports.options import options_parse
from reports.tables import report_tables
from tests.reports import independent as ind


def _notes(report: dict) -> str:
    return " ".join(t["note"] for t in report_tables(report))


def _rows(report: dict) -> list[list[str]]:
    return [row for t in report_tables(report) for row in t["rows"]]


def test_ranking_ties_are_stated_and_tie_averaged_ndcg_shown(generate):
    rng = np.random.default_rng(5)
    distances = np.round(rng.random((12, 10)), 1)  # one decimal: ties in most catalogues
    g = generate(mode="rank_all", n_cases=12, n_readers=2, q=0.6, seed=5, distances=distances)
    report = report_for_study(study=g.study, options=options_parse())
    s = report["ranking"]
    assert s["conventions"]["ties"] == S.TIES_RULE and "tie-broken" in s["conventions"]["tau_rho"]
    truth = g.values[..., 0].astype(int)
    tied = s["tie_averaged"]["model"]
    assert tied["n_cases_with_ties"] == sum(len(set(d)) < 10 for d in distances) > 0
    for q in (3, 10):  # the brute-force mean over every order of the ties, per case (tests/stats)
        assert tied[f"ndcg@{q}"] == pytest.approx(np.mean(S.ndcg_tie_averaged(distances, truth, q)))
        broken = ind.ndcg(ind.ranks_of(distances), truth, q).mean()  # scipy ordinal ranks: lower position first
        assert s["compared"]["model"]["metrics"][f"ndcg@{q}"]["estimate"] == pytest.approx(broken)
    assert tied["ndcg@3"] != pytest.approx(s["compared"]["model"]["metrics"]["ndcg@3"]["estimate"])
    assert S.TIES_RULE in _notes(report) and "tie-broken ranks" in _notes(report)
    assert any(row[0] == "model (tie-averaged)" for row in _rows(report))


def test_no_ties_no_tie_averaged_rows(generate):
    g = generate(mode="rank_all", n_cases=8, n_readers=2, q=0.6, seed=6)
    report = report_for_study(study=g.study, options=options_parse())
    assert report["ranking"]["tie_averaged"] == {}
    assert "no method has tied distances" in _notes(report)


def test_cutoff_beyond_the_catalogue_is_labelled_as_computed(generate):
    g = generate(mode="rank_all", n_cases=8, n_candidates=6, n_readers=2, q=0.6, seed=7)
    report = report_for_study(study=g.study, options=options_parse(p="3,20"))
    s = report["ranking"]
    assert s["p"] == [3, 6] and s["p_asked"] == [3, 20]
    metrics = s["compared"][g.run.name]["metrics"]
    assert "ndcg@6" in metrics and "ndcg@20" not in metrics
    truth = g.values[..., 0].astype(int)
    assert metrics["ndcg@6"]["estimate"] == pytest.approx(ind.ndcg(ind.ranks_of(g.distances), truth, 6).mean())
    assert "cut-off 20 is beyond the catalogue of 6: computed and labelled ndcg@6" in _notes(report)


def test_constant_rating_readers_left_out_of_per_case_spearman_and_counted(generate):
    g = generate(mode="rate", n_cases=10, n_candidates=6, n_readers=3, q=0.6, seed=8)
    answers = g.values.astype(float).copy()
    answers[[0, 3, 4], :, 1] = 3  # reader 2 rates three catalogues all 3
    answers[7, :, :] = 2  # every reader constant in case 7
    g = generate(mode="rate", n_cases=10, n_candidates=6, n_readers=3, seed=8, answers=answers, name="constant")
    report = report_for_study(study=g.study, options=options_parse())
    m = report["rating"]["methods"][g.run.name]["mean_case_spearman"]
    assert m["n_left_out"] == 3 + 3 and m["n_cases_used"] == 9 and "left out" in m["rule"]
    d = g.distances
    rho = [
        [
            np.nan if len(set(answers[c, :, r])) == 1 else ind.spearman(answers[c : c + 1, :, r], d[c : c + 1])[0]
            for r in range(3)
        ]
        for c in range(10)
    ]
    case_means = [np.nanmean(r) for r in rho if not np.isnan(r).all()]
    assert m["estimate"] == pytest.approx(np.mean(case_means))
    assert "6 reader-cases left out" in _notes(report)


def test_intervals_carry_n_failed_and_the_rule_is_stated(generate):
    g = generate(mode="choose_k", n_cases=20, n_readers=3, q=0.6, seed=9)
    report = report_for_study(study=g.study, options=options_parse(n_resamples=600, seed=4, readers_too=True))
    fk = report["choose_k"]["fleiss_kappa"]
    # the reader draws of stats.bootstrap_ci: 1/9 of resamples draw a single reader (no pair: dropped)
    rng = np.random.default_rng(4)
    single = 0
    for start in range(0, 600, 500):
        b = min(500, 600 - start)
        rng.integers(0, 20, size=(b, 20))
        single += sum(len(set(r)) == 1 for r in rng.integers(0, 3, size=(b, 3)))
    assert fk["n_failed"] == single > 0
    assert report["choose_k"]["mean_pairwise_agreement"]["n_failed"] == 0
    assert "n_failed" in report["uncertainty"]["failed_resamples"]
    assert report["uncertainty"]["failed_resamples"] in _notes(report)
    assert S.TIES_RULE in _notes(report)  # choose-k: the k nearest break ties the same way
