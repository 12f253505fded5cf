"""Conventions the report applies and states (issue 14, point 3): ties in distances, the default tie-break."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reports import stats as S
from reports.options import ReportOptions


def _hand_ndcg(order: list[int], truth_ranks: np.ndarray, p: int) -> float:
    """nDCG@p of candidates listed in `order`, gains 2^rel - 1, rel = (N + 1 - rank)/2 + 0.5, log2 discount."""
    n = len(truth_ranks)
    gain = [2.0 ** ((n + 1 - r) / 2 + 0.5) - 1 for r in truth_ranks]
    dcg = sum(gain[c] / np.log2(i + 2) for i, c in enumerate(order[:p]))
    ideal = sum(g / np.log2(i + 2) for i, g in enumerate(sorted(gain, reverse=True)[:p]))
    return dcg / ideal


def _mean_over_tie_orders(distances: np.ndarray, truth_ranks: np.ndarray, p: int) -> float:
    """The mean nDCG@p over every order of the tied candidates (brute force over the permutations)."""
    groups = [list(np.flatnonzero(distances == v)) for v in np.unique(distances)]
    values = [
        _hand_ndcg([c for part in parts for c in part], truth_ranks, p)
        for parts in itertools.product(*[list(itertools.permutations(g)) for g in groups])
    ]
    return float(np.mean(values))


@pytest.mark.parametrize("p", [1, 3, 5, 8])
def test_tie_averaged_ndcg_is_the_mean_over_every_order_of_the_ties(p):
    rng = np.random.default_rng(0)
    distances = np.array([[0.1, 0.3, 0.1, 0.2, 0.3, 0.3, 0.5, 0.1], [0.4, 0.2, 0.2, 0.9, 0.2, 0.1, 0.2, 0.7]])
    truth = np.stack([rng.permutation(8) + 1 for _ in range(2)])
    got = S.ndcg_tie_averaged(distances, truth, p)
    assert got == pytest.approx([_mean_over_tie_orders(distances[c], truth[c], p) for c in range(2)], abs=1e-12)
    # the reported nDCG breaks the same ties by the lower catalogue position instead
    broken = S.ndcg_at(distances, truth, p, method_is="distances")
    assert broken[0] == pytest.approx(_hand_ndcg(list(np.argsort(distances[0], kind="stable")), truth[0], p))
    assert S.tied_cases(distances).tolist() == [True, True]


def test_tie_averaged_ndcg_equals_ndcg_without_ties():
    rng = np.random.default_rng(1)
    distances, truth = rng.random((20, 10)), np.stack([rng.permutation(10) + 1 for _ in range(20)])
    assert not S.tied_cases(distances).any()
    for p in (3, 10):
        assert S.ndcg_tie_averaged(distances, truth, p) == pytest.approx(
            S.ndcg_at(distances, truth, p, method_is="distances"), abs=1e-12
        )


def test_module_docstring_names_the_reports_default_tie_break():
    # the docstring said 'model' was the default; the report's default is 'index'
    default = ReportOptions().tie_break
    assert f"``'{default}'`` (the report's default" in S.__doc__
    assert "``'model'`` (default)" not in S.__doc__
