"""choose_k_summary: hand-computed study and cross-checks against reference libraries."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from reports import stats as S

from ._sim import choose_k_study, random_permutation_ranks


def test_hand_study(hand_study):
    selections, model_ranks = hand_study
    report = S.choose_k_summary(selections, model_ranks, 2)
    assert report["fleiss_kappa"] == pytest.approx(4 / 9)
    assert report["mean_pairwise_agreement"] == pytest.approx(100 * 13 / 18)
    assert report["mean_pairwise_cohen_kappa"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert report["krippendorff_alpha"] == pytest.approx(149 / 324)
    assert report["n_cases_tie_broken"] == 1
    assert "model rank" in report["consensus_tie_break"]
    # consensus {A,B}, {A,C}, {B,D}; readers agree with it on 10, 12 and 8 of 12 items
    np.testing.assert_allclose(report["reader_agreement_with_consensus"], [1000 / 12, 100.0, 800 / 12])
    model = report["methods"]["model"]
    # consensus vs model agree on 10/12 items, both select 6/12 -> kappa = (5/6 - 1/2) / (1/2) = 2/3
    assert model["cohen_kappa_vs_consensus"] == pytest.approx(2 / 3)
    assert model["agreement_with_consensus"] == pytest.approx(1000 / 12)
    np.testing.assert_allclose(model["reader_agreement"], [800 / 12, 1000 / 12, 50.0])
    assert model["mean_reader_agreement"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_study_matches_reference_libraries(seed):
    selections, _, model_ranks = choose_k_study(40, 10, 5, 5, seed=seed)
    methods = {"vit": model_ranks, "random": random_permutation_ranks(40, 10, seed=seed)}
    report = S.choose_k_summary(selections, methods, 5)
    items = selections.reshape(-1, 5).astype(int)
    assert report["fleiss_kappa"] == pytest.approx(sm_fleiss(aggregate_raters(items, n_cat=2)[0]))
    assert report["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(items.T, level_of_measurement="nominal"))
    for i in range(5):
        for j in range(5):
            expected = cohen_kappa_score(items[:, i], items[:, j])
            assert report["pairwise_cohen_kappa"][i, j] == pytest.approx(expected)
    consensus = report["consensus"].ravel()
    for name, ranks in methods.items():
        chosen = (ranks <= 5).ravel()
        method = report["methods"][name]
        assert method["cohen_kappa_vs_consensus"] == pytest.approx(cohen_kappa_score(consensus, chosen))
        expected = [100 * np.mean(items[:, r] == chosen) for r in range(5)]
        np.testing.assert_allclose(method["reader_agreement"], expected)
    kappa = {name: m["cohen_kappa_vs_consensus"] for name, m in report["methods"].items()}
    assert kappa["vit"] > kappa["random"]


def test_tie_break_method_is_named_and_used():
    selections, _, model_ranks = choose_k_study(60, 10, 4, 5, seed=3, noise=2.0)
    other = random_permutation_ranks(60, 10, seed=3)
    methods = {"vit": model_ranks, "other": other}
    report = S.choose_k_summary(selections, methods, 5, tie_break_method="other")
    assert report["consensus_tie_break"].endswith("(other)")
    np.testing.assert_array_equal(report["consensus"], S.consensus_selection(selections, 5, model_ranks=other))
    by_index = S.choose_k_summary(selections, methods, 5, tie_break="index")
    assert "model" not in by_index["consensus_tie_break"]
    assert report["n_cases_tie_broken"] > 0
    assert not np.array_equal(by_index["consensus"], report["consensus"])
