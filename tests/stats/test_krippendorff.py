"""Krippendorff's alpha: own coincidence-matrix implementation vs the krippendorff package."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from reports import stats as S

nan = np.nan
# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
).T  # (units, observers)


def test_hand_binary(hand_study):
    # Items by number of selections n1 (3 readers): n1 in {1, 2} on 5 items; those contribute
    # o_01 = n0 * n1 / (m - 1) = 1 each -> o_01 = o_10 = 5; n = 36 values, n_0 = n_1 = 18.
    # D_o = 10/36, D_e = 2 * 18 * 18 / (36 * 35) = 18/35 -> alpha = 1 - (10/36)/(18/35) = 149/324.
    selections, _ = hand_study
    assert S.krippendorff_alpha(selections.reshape(-1, 3)) == pytest.approx(149 / 324)


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_published_example(level, published):
    assert S.krippendorff_alpha(KRIPPENDORFF_2011, level=level) == pytest.approx(published, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_package_with_missing(level, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=(50, 1))
    data = np.clip(truth + rng.integers(-1, 2, size=(50, 5)), 1, 5).astype(float)
    data[rng.random(data.shape) < 0.2] = np.nan
    expected = krippendorff.alpha(reliability_data=data.T, level_of_measurement=level)
    assert S.krippendorff_alpha(data, level=level) == pytest.approx(expected)


def test_perfect_agreement_and_bad_level():
    data = np.repeat(np.arange(10.0)[:, None] % 3, 4, axis=1)
    assert S.krippendorff_alpha(data) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        S.krippendorff_alpha(data, level="cardinal")
