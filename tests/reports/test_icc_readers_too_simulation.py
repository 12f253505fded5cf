"""Issue 14.1 recreated at the level of the printed interval: ICC(A,1) of a 3-reader rating study, cases only
against readers too. Counting a reader drawn three times as three raters gave ICC = 1 in 1/9 of the resamples,
so the upper bound was always 1.000 ([0.538, 0.696] cases only → [0.566, 1.000] readers too). With 3 readers
the report now combines the jackknife over cases and over readers (stats.readers_random_interval)."""

from __future__ import annotations

import numpy as np
import pytest

from reports import rating
from reports import stats as S
from reports.analysis import Analysis
from reports.options import options_parse

N_CASES, N_CAND, N_READERS = 30, 10, 3


def _study(seed: int) -> np.ndarray:
    """(C, M, R) ratings 1–5 of three readers with their own bias and noise (as the coverage benchmark)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(N_CASES, N_CAND)) + rng.normal(0, 0.5, size=(N_CASES, 1))
    perceived = latent[..., None] + np.array([0.7, 1.0, 1.3]) * rng.normal(size=(N_CASES, N_CAND, N_READERS))
    return np.clip(np.round(3 + 0.9 * perceived + np.array([0.0, 0.3, -0.3])), 1, 5)


def _icc_interval(x: np.ndarray, readers_too: bool) -> dict:
    an = Analysis("rate", x, np.arange(N_CASES), ["R1", "R2", "R3"], 0, {}, None, (1, 5))
    options = options_parse(n_resamples=400, seed=2, readers_too=readers_too)
    return rating.section(an, options)["icc"]["ICC(A,1)"]


def _three_raters_statistic(items: np.ndarray):
    """The old rule: every drawn column is a rater, so x[:, [0, 0, 0]] is three raters in perfect agreement."""
    return lambda idx, ridx=None: S.icc(items[idx] if ridx is None else items[np.ix_(idx, ridx)])


@pytest.mark.parametrize("seed", range(6))
def test_readers_too_interval_is_not_pinned_at_one(seed):
    x = _study(seed)
    cases = _icc_interval(x, readers_too=False)
    both = _icc_interval(x, readers_too=True)
    assert cases["resampled"] == "cases" and both["resampled"] == "cases+readers"
    assert cases["estimate"] == both["estimate"]
    assert cases["ci_low"] < cases["estimate"] < cases["ci_high"] < 0.9
    # readers too: jackknife over cases and readers, wider than the case interval (no reader drawn three times)
    assert both["ci_high"] < 0.95 and both["ci_low"] < cases["ci_low"] < cases["ci_high"] < both["ci_high"]
    assert "jackknife" in both["readers_rule"]
    # the old rule with the interval of the time (percentile) on the same draws: upper bound 1 exactly
    items = x.reshape(-1, N_READERS)
    old = S.bootstrap_ci(
        _three_raters_statistic(items),
        len(items),
        n_resamples=400,
        seed=2,
        n_readers=N_READERS,
        vectorized=False,
        cluster=np.repeat(np.arange(N_CASES), N_CAND),
        method="percentile",
    )
    assert old["high"] == pytest.approx(1.0) and old["n_failed"] == 0


def test_readers_too_interval_is_wider_over_studies():
    """Resampling readers adds the reader variance: on average the interval widens, and its upper end moves
    with the data instead of sitting at 1."""
    widths, highs = [], []
    for seed in range(6):
        x = _study(seed)
        cases, both = _icc_interval(x, False), _icc_interval(x, True)
        widths.append((both["ci_high"] - both["ci_low"]) - (cases["ci_high"] - cases["ci_low"]))
        highs.append(both["ci_high"])
    assert np.mean(widths) > 0
    assert np.ptp(highs) > 0.02
