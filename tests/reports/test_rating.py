"""Rating reports: ICC (pingouin), weighted κ (scikit-learn), Krippendorff α, correlation with distances (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reports.build import report_for_study
from reports.options import options_parse
from tests.reports import independent as ind


@pytest.fixture
def study(generate):
    return generate(mode="rate", n_cases=20, n_candidates=8, n_readers=3, q=0.6, seed=7)


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_icc_matches_pingouin(study):
    s = _report(study)["rating"]
    items = study.values.reshape(-1, 3)
    expected = ind.icc(items)
    assert s["icc"]["ICC(A,1)"]["estimate"] == pytest.approx(expected["ICC2"])
    assert s["icc"]["ICC(C,1)"]["estimate"] == pytest.approx(expected["ICC3"])
    assert s["icc"]["ICC(A,k)"]["estimate"] == pytest.approx(expected["ICC2k"])


def test_weighted_kappa_and_alpha(study):
    s = _report(study)["rating"]
    items = study.values.reshape(-1, 3).astype(int)
    quad = ind.pairwise_cohen(items, weights="quadratic", labels=[1, 2, 3, 4, 5])
    lin = ind.pairwise_cohen(items, weights="linear", labels=[1, 2, 3, 4, 5])
    off = ~np.eye(3, dtype=bool)
    assert np.allclose(s["weighted_kappa"]["matrix"], quad)
    assert s["weighted_kappa"]["mean"]["estimate"] == pytest.approx(quad[off].mean())
    assert s["weighted_kappa"]["mean_linear"] == pytest.approx(lin[off].mean())
    assert s["krippendorff_alpha_ordinal"]["estimate"] == pytest.approx(ind.alpha(items, "ordinal"))
    assert s["krippendorff_alpha_interval"]["estimate"] == pytest.approx(ind.alpha(items, "interval"))


def test_correlation_with_model_distances(study):
    s = _report(study)["rating"]
    m = s["methods"][study.run.name]
    mean_rating = study.values.mean(-1).ravel()
    d = study.distances.ravel()
    assert m["correlation"]["spearman"] == pytest.approx(sps.spearmanr(mean_rating, d).statistic)
    assert m["correlation"]["pearson"] == pytest.approx(sps.pearsonr(mean_rating, d).statistic)
    assert m["correlation"]["spearman"] < -0.3  # readers rate the model's near images higher (q = 0.6)
    for r, reader in enumerate(study.readers):
        assert m["per_reader_spearman"][reader.username] == pytest.approx(
            sps.spearmanr(study.values[..., r].ravel(), d).statistic
        )
    per_case = np.array(
        [[sps.spearmanr(study.values[c, :, r], study.distances[c]).statistic for r in range(3)] for c in range(20)]
    )
    assert m["mean_case_spearman"]["estimate"] == pytest.approx(np.nanmean(np.nanmean(per_case, axis=1)))
    by_rank = [
        np.mean([study.values[c, np.argsort(study.distances[c])[i]].mean() for c in range(20)]) for i in range(8)
    ]
    assert m["mean_rating_by_model_rank"] == pytest.approx(by_rank)


def test_reader_means(study):
    s = _report(study)["rating"]
    for r, reader in enumerate(study.readers):
        assert s["reader_mean_rating"][reader.username] == pytest.approx(study.values[..., r].mean())


def test_rating_outside_the_scale_is_counted_not_fatal(generate):
    answers = np.array([[[1, 1], [5, 4], [6, 6]], [[2, 3], [3, 3], [4, 5]]], dtype=float)  # a 6 on a 1-5 scale
    g = generate(mode="rate", answers=answers, distances=np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]]))
    s = _report(g)["rating"]
    expected = ind.pairwise_cohen(answers.reshape(-1, 2).astype(int), weights="quadratic", labels=[1, 2, 3, 4, 5, 6])
    assert s["weighted_kappa"]["mean"]["estimate"] == pytest.approx(expected[0, 1])
