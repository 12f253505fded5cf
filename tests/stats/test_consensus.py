"""Exactly-k consensus with a documented tie-break, model selection, % agreement."""

from __future__ import annotations

import numpy as np
import pytest

from reports import stats as S

from ._sim import choose_k_study, random_permutation_ranks


def _naive_consensus(sel_case, k, model_ranks=None):
    """Reference rule with Python tuples: (-votes, model rank or 0, catalogue index)."""
    votes = sel_case.sum(-1)
    key = [(-votes[i], 0 if model_ranks is None else model_ranks[i], i) for i in range(len(votes))]
    chosen = [i for _, _, i in sorted(key)[:k]]
    return np.isin(np.arange(len(votes)), chosen)


def test_hand_tie_broken_by_model_rank(hand_study):
    # case 2 votes A3 B1 C1 D1: B, C, D tie for the second slot; the model ranks C (rank 2) closest.
    selections, model_ranks = hand_study
    mask = S.consensus_selection(selections, 2, model_ranks=model_ranks)
    np.testing.assert_array_equal(mask.astype(int), [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]])


def test_hand_tie_broken_by_index(hand_study):
    selections, model_ranks = hand_study
    expected = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]]
    by_index = S.consensus_selection(selections, 2, model_ranks=model_ranks, tie_break="index")
    np.testing.assert_array_equal(by_index.astype(int), expected)
    np.testing.assert_array_equal(S.consensus_selection(selections, 2).astype(int), expected)  # no model


def test_tie_detection_and_rule_names(hand_study):
    selections, _ = hand_study
    np.testing.assert_array_equal(S.consensus_tied(selections, 2), [False, True, False])
    assert "model rank" in S.tie_break_rule("model")
    assert "model" not in S.tie_break_rule("model", has_model_ranks=False)
    with pytest.raises(ValueError):
        S.consensus_selection(selections, 2, tie_break="random")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("use_model", [True, False])
def test_vectorised_matches_naive_rule(seed, use_model):
    selections, _, model_ranks = choose_k_study(50, 10, 4, 5, seed=seed, noise=2.0)  # 4 readers: many ties
    ranks = model_ranks if use_model else None
    mask = S.consensus_selection(selections, 5, model_ranks=ranks)
    for c in range(50):
        expected = _naive_consensus(selections[c], 5, None if ranks is None else ranks[c])
        np.testing.assert_array_equal(mask[c], expected)


def test_exactly_k_and_votes_respected():
    selections, _, model_ranks = choose_k_study(200, 10, 5, 5, seed=9, noise=3.0)
    mask = S.consensus_selection(selections, 5, model_ranks=model_ranks)
    assert (mask.sum(-1) == 5).all()
    votes = selections.sum(-1)
    min_chosen = np.where(mask, votes, 99).min(-1)
    max_unchosen = np.where(mask, -1, votes).max(-1)
    assert (min_chosen >= max_unchosen).all()
    assert S.consensus_tied(selections, 5).any()  # the data really exercise the tie-break


def test_model_selection_picks_k_nearest():
    np.testing.assert_array_equal(S.model_selection([3, 1, 4, 2, 5], 2), [False, True, False, True, False])
    ranks = random_permutation_ranks(30, 10, seed=1)
    np.testing.assert_array_equal(S.model_selection(ranks, 5), ranks <= 5)
    assert (S.model_selection(np.zeros((4, 10)), 5).sum(-1) == 5).all()  # ties -> lower index


def test_percent_agreement_hand(hand_study):
    # Model picks {A,B}, {A,C}, {A,B}. Reader agreement over 12 items:
    #   R1: 4 + 2 + 2 = 8 (66.7 %), R2: 4 + 4 + 2 = 10 (83.3 %), R3: 2 + 2 + 2 = 6 (50 %).
    selections, model_ranks = hand_study
    model = S.model_selection(model_ranks, 2)
    np.testing.assert_allclose(S.reader_agreement(selections, model), [800 / 12, 1000 / 12, 50.0])
    consensus = S.consensus_selection(selections, 2, model_ranks=model_ranks)
    assert S.percent_agreement(consensus, model) == pytest.approx(1000 / 12)  # case 3 differs on A, D
    assert S.percent_agreement([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(50.0)
