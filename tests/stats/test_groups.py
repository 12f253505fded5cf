"""Subgroup means."""

from __future__ import annotations

import numpy as np
import pytest

from reports import stats as S


def test_by_group_hand():
    values = [0.9, 0.7, np.nan, 0.5, 0.8, 0.6]
    groups = ["CXR", "CT", "CT", "CT", "CXR", "CXR"]
    result = S.by_group(values, groups)
    assert list(result) == ["CT", "CXR"]
    assert result["CT"] == {"mean": pytest.approx(0.6), "n": 2}  # NaN skipped
    assert result["CXR"] == {"mean": pytest.approx(0.7666666666666667), "n": 3}


def test_by_group_integer_groups_match_loop():
    rng = np.random.default_rng(0)
    values, groups = rng.random(100), rng.integers(0, 4, size=100)
    result = S.by_group(values, groups)
    for g in range(4):
        assert result[g]["mean"] == pytest.approx(values[groups == g].mean())
        assert result[g]["n"] == int((groups == g).sum())
