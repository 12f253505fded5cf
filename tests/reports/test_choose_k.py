"""Choose-k reports (paper 000) equal independent computations on generated studies with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from reports.build import report_for_study
from reports.options import options_parse
from tests.reports import independent as ind


@pytest.fixture
def study(generate):
    return generate(mode="choose_k", n_cases=30, n_candidates=10, n_readers=4, k=5, q=0.6, seed=3)


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_agreement_between_readers_matches_statsmodels_sklearn_krippendorff(study):
    s = _report(study)["choose_k"]
    sel = study.values.astype(bool)
    items = sel.reshape(-1, 4).astype(int)
    assert s["fleiss_kappa"]["estimate"] == pytest.approx(ind.fleiss(sel))
    assert np.allclose(s["pairwise_cohen_kappa"], ind.pairwise_cohen(items))
    assert s["krippendorff_alpha"]["estimate"] == pytest.approx(ind.alpha(items))
    pairs = [ind.percent(items[:, i], items[:, j]) for i in range(4) for j in range(i + 1, 4)]
    assert s["mean_pairwise_agreement"]["estimate"] == pytest.approx(np.mean(pairs))
    # every reader selects exactly half: Fleiss kappa = 2 * mean pairwise agreement - 1 (papers README)
    assert s["fleiss_kappa"]["estimate"] == pytest.approx(2 * np.mean(pairs) / 100 - 1)


@pytest.mark.parametrize("tie_break", ["index", "model"])
def test_consensus_and_model_match_an_independent_sort(study, tie_break):
    s = _report(study, tie_break=tie_break)["choose_k"]
    sel = study.values.astype(bool)
    model = ind.k_nearest(study.distances, 5)
    cons = ind.consensus(sel, 5, ind.ranks_of(study.distances) if tie_break == "model" else None)
    m = s["methods"][study.run.name]
    from sklearn.metrics import cohen_kappa_score

    assert m["cohen_kappa_vs_consensus"]["estimate"] == pytest.approx(cohen_kappa_score(cons.ravel(), model.ravel()))
    assert m["agreement_with_consensus"]["estimate"] == pytest.approx(ind.percent(cons, model))
    for r, reader in enumerate(study.readers):
        assert m["reader_agreement"][reader.username]["estimate"] == pytest.approx(ind.percent(sel[..., r], model))
        assert s["consensus"]["reader_agreement"][reader.username]["estimate"] == pytest.approx(
            ind.percent(sel[..., r], cons)
        )
    assert m["mean_reader_agreement"]["estimate"] == pytest.approx(
        np.mean([ind.percent(sel[..., r], model) for r in range(4)])
    )
    votes = np.sort(sel.sum(-1), axis=1)[:, ::-1]
    assert s["consensus"]["n_cases_tie_broken"] == int((votes[:, 4] == votes[:, 5]).sum())


def test_readers_who_always_follow_the_truth_agree_perfectly(generate):
    g = generate(mode="choose_k", n_cases=8, n_readers=3, q=1.0)
    s = _report(g)["choose_k"]
    assert s["fleiss_kappa"]["estimate"] == pytest.approx(1.0)
    assert s["krippendorff_alpha"]["estimate"] == pytest.approx(1.0)
    m = s["methods"][g.run.name]
    assert m["cohen_kappa_vs_consensus"]["estimate"] == pytest.approx(1.0)
    assert m["mean_reader_agreement"]["estimate"] == pytest.approx(100.0)
    assert s["consensus"]["n_cases_tie_broken"] == 0


def test_random_readers_sit_near_chance(generate):
    g = generate(mode="choose_k", n_cases=60, n_readers=5, q=0.0, seed=11)
    s = _report(g)["choose_k"]
    assert s["chance_agreement"] == pytest.approx(50.0)
    assert abs(s["fleiss_kappa"]["estimate"]) < 0.1
    assert abs(s["methods"][g.run.name]["mean_reader_agreement"]["estimate"] - 50.0) < 5


def test_single_reader_gives_method_agreement_without_inter_reader_statistics(generate):
    g = generate(mode="choose_k", n_cases=6, n_readers=1, q=0.5)
    report = _report(g, n_resamples=50)
    s = report["choose_k"]
    assert s["fleiss_kappa"]["estimate"] is None and s["pairwise_cohen_kappa"] is None
    model = ind.k_nearest(g.distances, 5)
    m = s["methods"][g.run.name]
    assert m["reader_agreement"][g.readers[0].username]["estimate"] == pytest.approx(
        ind.percent(g.values[..., 0].astype(bool), model)
    )
