"""Tiny studies whose every number was computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reports import exports
from reports.analysis import report_inputs
from reports.build import report_for_study
from reports.options import ReportOptions, options_parse

# Choose 2 of 4, two cases, readers A, B, C (candidate positions 0-3):
#   case 1: A {0,1}  B {0,1}  C {0,2}      votes 3, 2, 1, 0
#   case 2: A {0,1}  B {1,2}  C {0,2}      votes 2, 2, 2, 0  -> a tie at the cut-off
# The model's ranks: case 1 [1, 3, 2, 4] -> selects {0,2}; case 2 [3, 1, 2, 4] -> selects {1,2}.
SEL = {0: [[0, 1], [0, 1], [0, 2]], 1: [[0, 1], [1, 2], [0, 2]]}
DISTANCES = np.array([[0.1, 0.3, 0.2, 0.4], [0.3, 0.1, 0.2, 0.4]])


def _answers() -> np.ndarray:
    x = np.zeros((2, 4, 3))
    for c, readers in SEL.items():
        for r, chosen in enumerate(readers):
            x[c, chosen, r] = 1
    return x


@pytest.fixture
def hand(generate):
    return generate(mode="choose_k", k=2, answers=_answers(), distances=DISTANCES)


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_agreement_between_readers(hand):
    s = _report(hand)["choose_k"]
    # Fleiss: per item P_i = [s(s-1) + (3-s)(2-s)] / 6 with s = votes: 1, 1/3, 1/3, 1, 1/3, 1/3, 1/3, 1
    # -> mean 7/12; p(selected) = 12/24 -> P_e = 1/2; kappa = (7/12 - 1/2) / (1/2) = 1/6.
    assert s["fleiss_kappa"]["estimate"] == pytest.approx(1 / 6)
    # pairwise agreement A-B 6/8, A-C 4/8, B-C 4/8 -> mean 14/24
    assert s["mean_pairwise_agreement"]["estimate"] == pytest.approx(100 * 14 / 24)
    # Cohen: every reader selects half, so p_e = 1/2 and kappa = 2 * agreement - 1
    assert np.allclose(s["pairwise_cohen_kappa"], [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    # Krippendorff: disagreeing pairs per item s(3-s) sum to 10 -> D_o = 10/24; D_e = 2*12*12/(24*23) = 12/23
    assert s["krippendorff_alpha"]["estimate"] == pytest.approx(1 - (10 / 24) / (12 / 23))  # 29/144


def test_consensus_with_the_index_tie_break(hand):
    s = _report(hand)["choose_k"]
    # case 2 ties three candidates at 2 votes: the lower catalogue index wins -> {0,1}
    assert s["consensus"]["n_cases_tie_broken"] == 1
    assert "lower catalogue index" in s["consensus"]["tie_break"]
    m = s["methods"]["model"]
    # consensus {0,1},{0,1} vs model {0,2},{1,2}: 2 + 2 of 8 items agree, marginals 1/2 -> kappa 0
    assert m["cohen_kappa_vs_consensus"]["estimate"] == pytest.approx(0.0)
    assert m["agreement_with_consensus"]["estimate"] == pytest.approx(50.0)
    # readers vs the model: A 2+2, B 2+4, C 4+2 of 8
    got = {r: v["estimate"] for r, v in m["reader_agreement"].items()}
    assert list(got.values()) == pytest.approx([50.0, 75.0, 75.0])
    assert m["mean_reader_agreement"]["estimate"] == pytest.approx(200 / 3)
    # readers vs the consensus: A 8, B 4+2, C 2+2 of 8
    cons = [v["estimate"] for v in s["consensus"]["reader_agreement"].values()]
    assert cons == pytest.approx([100.0, 75.0, 50.0])
    assert s["consensus"]["mean_reader_agreement"]["estimate"] == pytest.approx(75.0)


def test_consensus_with_the_model_tie_break(hand):
    s = _report(hand, tie_break="model")["choose_k"]
    # the tie in case 2 goes to the model's nearer candidates 1 and 2 -> consensus {1,2} = the model's
    assert "model" in s["consensus"]["tie_break"]
    m = s["methods"]["model"]
    assert m["agreement_with_consensus"]["estimate"] == pytest.approx(75.0)
    assert m["cohen_kappa_vs_consensus"]["estimate"] == pytest.approx(0.5)
    cons = [v["estimate"] for v in s["consensus"]["reader_agreement"].values()]
    assert cons == pytest.approx([75.0, 100.0, 50.0])


def test_imrmc_scores_by_hand(hand):
    inputs = report_inputs(study=hand.study, options=ReportOptions())
    rows = exports.imrmc_rows(inputs, ReportOptions())
    names = [r.username for r in hand.readers]
    got = {(reader, case): score for reader, case, modality, score in rows if modality == "model"}
    c1, c2 = hand.case_ids.tolist()
    expected = {
        (names[0], c1): 0.5,
        (names[0], c2): 0.5,
        (names[1], c1): 0.5,
        (names[1], c2): 1.0,
        (names[2], c1): 1.0,
        (names[2], c2): 0.5,
    }
    assert got == pytest.approx(expected)


# Rank all: one case of 3 candidates, ground truth R1 ranks [1, 2, 3], R2 and the model rank [2, 1, 3].
# relevance (3 + 1 - r)/2 + 0.5 = 2.0, 1.5, 1.0; gains 2^rel - 1 = 3, 2^1.5 - 1, 1; discounts 1, 1/log2(3), 1/2.
GAINS = np.array([3.0, 2**1.5 - 1, 1.0])
IDCG3 = GAINS[0] + GAINS[1] / np.log2(3) + GAINS[2] / 2
NDCG3 = (GAINS[1] + GAINS[0] / np.log2(3) + GAINS[2] / 2) / IDCG3  # order: candidate 1, 0, 2
NDCG1 = GAINS[1] / GAINS[0]


@pytest.fixture
def ranked(generate):
    answers = np.array([[[1, 2], [2, 1], [3, 3]]], dtype=float)
    return generate(mode="rank_all", answers=answers, distances=np.array([[0.2, 0.1, 0.3]]), ground_truth=0)


def test_ndcg_tau_rho_by_hand(ranked):
    s = _report(ranked, p="1,3")["ranking"]
    model = s["compared"]["model"]["metrics"]
    other = s["compared"][ranked.readers[1].username]["metrics"]
    for m in (model, other):
        assert m["ndcg@3"]["estimate"] == pytest.approx(NDCG3)  # 0.9071
        assert m["ndcg@1"]["estimate"] == pytest.approx(NDCG1)
        assert m["kendall_tau"]["estimate"] == pytest.approx(1 / 3)  # 1 discordant pair of 3
        assert m["spearman_rho"]["estimate"] == pytest.approx(1 - 6 * 2 / (3 * 8))
    assert NDCG3 == pytest.approx(0.907085, abs=1e-6)


def test_random_baseline_is_the_mean_over_every_order(ranked):
    s = _report(ranked, p="1,3")["ranking"]
    disc = 1 / np.log2(np.arange(2, 5))
    orders = list(itertools.permutations(range(3)))
    mean3 = np.mean([GAINS[list(o)] @ disc / IDCG3 for o in orders])
    mean1 = np.mean([GAINS[o[0]] / GAINS[0] for o in orders])
    assert s["random"]["ndcg@3"] == pytest.approx(mean3)
    assert s["random"]["ndcg@1"] == pytest.approx(mean1)
