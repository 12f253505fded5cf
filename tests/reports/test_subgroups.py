"""Subgroup tables (query modality, query class, reader): recomputed per group, and they add up."""

from __future__ import annotations

import numpy as np
import pytest

from reports import subgroups
from reports.build import report_for_study
from reports.options import options_parse
from tests.reports import independent as ind


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_modality_groups_add_up_to_the_whole_ranking_report(generate):
    g = generate(mode="rank_all", n_cases=15, n_readers=3, q=0.5, modalities=("CR", "CT", "MR"))
    report = _report(g)
    groups = report["subgroups"]["modality"]["groups"]
    assert set(groups) == {"CR", "CT", "MR"}
    assert sum(x["n_cases"] for x in groups.values()) == report["n_cases"] == 15
    for name, c in report["ranking"]["compared"].items():
        for metric in ("ndcg@3", "ndcg@10", "kendall_tau"):
            pooled = sum(x["n_cases"] * x["statistics"][name][metric] for x in groups.values()) / 15
            assert pooled == pytest.approx(c["metrics"][metric]["estimate"])
    ct = np.array([m == "CT" for m in g.modalities])
    expected = ind.ndcg(ind.ranks_of(g.distances[ct]), g.values[ct][..., 0].astype(int), 10).mean()
    assert groups["CT"]["statistics"][g.run.name]["ndcg@10"] == pytest.approx(expected)


def test_query_class_groups_of_a_choose_k_study(generate):
    g = generate(mode="choose_k", n_cases=12, n_readers=3, q=0.6, classes=("effusion", "normal"))
    report = _report(g, class_label="finding")
    split = report["subgroups"]["query_class"]
    assert split["key"] == "query label 'finding'" and set(split["groups"]) == {"effusion", "normal"}
    assert sum(x["n_cases"] for x in split["groups"].values()) == 12
    mean = report["choose_k"]["methods"][g.run.name]["mean_reader_agreement"]["estimate"]
    pooled = (
        sum(x["n_cases"] * x["statistics"][g.run.name]["mean_reader_agreement"] for x in split["groups"].values()) / 12
    )
    assert pooled == pytest.approx(mean)  # equal items per case: group means recombine exactly
    eff = np.array([c == "effusion" for c in g.classes])
    assert split["groups"]["effusion"]["statistics"]["readers"]["fleiss_kappa"] == pytest.approx(
        ind.fleiss(g.values[eff].astype(bool))
    )


def test_query_class_of_queries_without_the_label(generate):
    g = generate(mode="choose_k", n_cases=4, n_readers=2)
    report = _report(g, class_label="no-such-label")
    assert list(report["subgroups"]["query_class"]["groups"]) == ["(missing)"]


def test_by_reader_tables(generate):
    g = generate(mode="rank_all", n_cases=10, n_readers=3, q=0.5)
    report = _report(g)
    by_reader = report["subgroups"]["reader"]["groups"]
    truth = report["ranking"]["ground_truth"]
    model = report["ranking"]["compared"][g.run.name]["metrics"]
    assert by_reader[truth]["statistics"][g.run.name]["ndcg@10"] == pytest.approx(model["ndcg@10"]["estimate"])
    other = g.readers[2].username
    expected = ind.ndcg(ind.ranks_of(g.distances), g.values[..., 2].astype(int), 3).mean()
    assert by_reader[other]["statistics"][g.run.name]["ndcg@3"] == pytest.approx(expected)
    c = generate(mode="choose_k", n_cases=6, n_readers=2, q=0.6)
    rep = _report(c)
    row = rep["subgroups"]["reader"]["groups"][c.readers[1].username]["statistics"]
    assert (
        row[c.run.name]["agreement"]
        == rep["choose_k"]["methods"][c.run.name]["reader_agreement"][c.readers[1].username]["estimate"]
    )


def test_too_many_groups_are_not_tabulated(generate, monkeypatch):
    monkeypatch.setattr(subgroups, "MAX_GROUPS", 2)
    g = generate(mode="rate", n_cases=6, n_readers=2, modalities=("CR", "CT", "MR"))
    split = _report(g)["subgroups"]["modality"]
    assert split["groups"] == {} and "too many" in split["note"]
