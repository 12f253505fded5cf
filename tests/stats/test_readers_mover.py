"""stats.readers_mover: a case interval widened by the readers' jackknife (readers random, issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reports import stats as S


def test_hand_computed():
    # leave-one-reader-out values 0.4, 0.5, 0.6: mean 0.5, jackknife variance 2/3 · 0.02 = 0.013333
    # reader half-width t(0.975, 2) · sqrt(0.013333) = 4.302653 · 0.115470 = 0.496827
    low, high = S.readers_mover(0.5, 0.45, 0.58, [0.4, 0.5, 0.6])
    half = sps.t.ppf(0.975, 2) * np.sqrt(2 / 3 * 0.02)
    assert half == pytest.approx(0.496827, abs=1e-6)
    assert low == pytest.approx(0.5 - np.sqrt(0.05**2 + half**2))
    assert high == pytest.approx(0.5 + np.sqrt(0.08**2 + half**2))


def test_equal_readers_leave_the_case_interval_unchanged_and_level_matters():
    assert S.readers_mover(0.5, 0.45, 0.58, [0.5, 0.5, 0.5]) == pytest.approx((0.45, 0.58))
    wide = S.readers_mover(0.5, 0.45, 0.58, [0.4, 0.5, 0.6], level=0.99)
    assert wide[0] < S.readers_mover(0.5, 0.45, 0.58, [0.4, 0.5, 0.6])[0]


def test_fisher_z_keeps_a_correlation_inside_minus_one_one():
    plain = S.readers_mover(0.8, 0.7, 0.88, [0.5, 0.8, 0.95])
    z = S.readers_mover(0.8, 0.7, 0.88, [0.5, 0.8, 0.95], fisher_z=True)
    assert plain[1] > 1.0 and -1.0 < z[0] < 0.7 and 0.88 < z[1] < 1.0


def test_fewer_than_three_readers_or_nan_give_nan():
    assert np.isnan(S.readers_mover(0.5, 0.4, 0.6, [0.5, 0.6])).all()
    assert np.isnan(S.readers_mover(0.5, np.nan, 0.6, [0.4, 0.5, 0.6])).all()
