"""mrmc.or_mean_ci: the mean over readers and cases with readers and cases random (single-method OR / Hillis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm

from reports import mrmc

from ._or_reference import or_reference


def _scores(n_cases=25, n_readers=4, seed=0):
    rng = np.random.default_rng(seed)
    return (
        0.6
        + rng.normal(0, 0.1, (n_cases, 1))
        + rng.normal(0, 0.05, n_readers)
        + rng.normal(0, 0.08, (n_cases, n_readers))
    )


def test_matches_the_loop_reference_and_hillis_df():
    y = _scores()
    res = mrmc.or_mean_ci(y)
    n_c, n_r = y.shape
    theta = [[float(y[:, j].mean()) for j in range(n_r)]]
    jack = [[[(y[:, j].sum() - y[k, j]) / (n_c - 1) for k in range(n_c)] for j in range(n_r)]]
    # the reference needs two methods: a copy shifted by a constant has the same covariances
    ref = or_reference(theta + [[t + 1.0 for t in theta[0]]], jack + [[[v + 1.0 for v in r] for r in jack[0]]])
    ms_r = np.var(theta[0], ddof=1)
    den = ms_r + n_r * max(ref["cov2"], 0.0)
    assert res["cov2"] == pytest.approx(ref["cov2"]) and res["ms_r"] == pytest.approx(ms_r)
    assert res["se"] == pytest.approx(np.sqrt(den / n_r))
    assert res["df"] == pytest.approx(den**2 * (n_r - 1) / ms_r**2)
    q = sps.t.ppf(0.975, res["df"])
    assert (res["low"], res["high"]) == pytest.approx((y.mean() - q * res["se"], y.mean() + q * res["se"]))


def test_variance_is_the_two_way_anova_estimate(seed=3):
    """For a mean, (MS(R) + J·Cov2)/J = (MS_cases + MS_readers − MS_error)/(K·J) of the two-way ANOVA (statsmodels)."""
    y = _scores(seed=seed)
    n_c, n_r = y.shape
    long = pd.DataFrame(
        {"y": y.ravel(), "case": np.repeat(np.arange(n_c), n_r), "reader": np.tile(np.arange(n_r), n_c)}
    )
    table = anova_lm(smf.ols("y ~ C(case) + C(reader)", data=long).fit())
    ms = table["mean_sq"]
    var = (ms["C(case)"] + ms["C(reader)"] - ms["Residual"]) / (n_c * n_r)
    assert mrmc.or_mean_ci(y)["se"] ** 2 == pytest.approx(var)


def test_needs_two_readers_and_three_cases_and_drops_nan_cases():
    with pytest.raises(ValueError, match="two readers"):
        mrmc.or_mean_ci(np.ones((10, 1)))
    y = _scores()
    y_nan = np.vstack([y, [np.nan] + [0.5] * (y.shape[1] - 1)])
    assert mrmc.or_mean_ci(y_nan)["low"] == pytest.approx(mrmc.or_mean_ci(y)["low"])
