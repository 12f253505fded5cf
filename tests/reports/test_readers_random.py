"""Method vs method with readers as a random effect (OR / Hillis, the method × reader variance component kept ≥ 0)
in the report, against a loop implementation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from reports.analysis import readers_random_pairs
from reports.build import report_for_study
from reports.options import options_parse
from reports.tables import report_tables
from tests.reports import independent as ind
from tests.stats._or_reference import or_reference


def _reference(per_reader_a: np.ndarray, per_reader_b: np.ndarray) -> dict:
    """OR analysis by loops of two methods' (K, J) per-case scores; FOM = mean over cases, jackknife by hand."""
    y = np.stack([per_reader_a.T, per_reader_b.T])  # (2, J, K)
    n_c = y.shape[-1]
    theta = y.mean(-1)
    jack = [
        [[(y[i, j].sum() - y[i, j, k]) / (n_c - 1) for k in range(n_c)] for j in range(y.shape[1])] for i in range(2)
    ]
    return or_reference(theta.tolist(), jack, floor=True)


def _check(pair: dict, ref: dict, name_a: str) -> None:
    sign = 1.0 if pair["a"] == name_a else -1.0
    r = ref["pairs"][(0, 1)]
    assert pair["mean_difference"] == pytest.approx(sign * r["difference"], rel=1e-10)
    assert pair["p_value"] == pytest.approx(r["p_value"], rel=1e-9) and pair["df"] == pytest.approx(ref["ddf"])
    lo, hi = sorted(sign * np.array(r["ci"]))
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx((lo, hi), rel=1e-9)
    assert pair["p_holm"] == pytest.approx(pair["p_value"])  # one pair: nothing to adjust


def _report(g) -> dict:
    return report_for_study(study=g.study, options=options_parse(n_resamples=200, seed=1))


def test_choose_k_readers_random(generate):
    g = generate(mode="choose_k", n_cases=20, n_readers=4, q=0.7, seed=31, partial_method=True)
    report = _report(g)
    rr = report["tests"]["readers_random"]
    (pair,) = rr["method_vs_method"]
    sel = g.values.astype(bool)
    even = np.arange(20) % 2 == 0  # bm25 ranks the even cases only
    mine, other = ind.k_nearest(g.distances, 5), ind.k_nearest(2.0 - g.distances, 5)

    def score(chosen):
        return np.array([[ind.percent(sel[c, :, r], chosen[c]) for r in range(4)] for c in np.flatnonzero(even)])

    _check(pair, _reference(score(mine), score(other)), g.run.name)
    assert (pair["n_cases"], pair["n_readers"]) == (10, 4) and "Hillis" in rr["method"]
    table = [t for t in report_tables(report) if t["title"] == "Methods compared with readers as a random effect"]
    assert table and table[0]["rows"][0][-1] != "—" and "Holm" in table[0]["note"]


def test_ranking_readers_random(generate):
    g = generate(mode="rank_all", n_cases=16, n_readers=3, q=0.6, seed=32, partial_method=True)
    pairs = _report(g)["tests"]["readers_random"]["method_vs_method"]
    assert [p["metric"] for p in pairs] == ["ndcg@3", "ndcg@10"]
    even = np.flatnonzero(np.arange(16) % 2 == 0)
    truth = g.values.astype(int)[even]
    for pair, q in zip(pairs, (3, 10)):
        a = np.stack([ind.ndcg(ind.ranks_of(g.distances[even]), truth[..., r], q) for r in range(3)], -1)
        b = np.stack([ind.ndcg(ind.ranks_of(2.0 - g.distances[even]), truth[..., r], q) for r in range(3)], -1)
        _check(pair, _reference(a, b), g.run.name)


def test_rating_readers_random(generate):
    g = generate(mode="rate", n_cases=14, n_candidates=6, n_readers=3, q=0.6, seed=33, partial_method=True)
    (pair,) = _report(g)["tests"]["readers_random"]["method_vs_method"]
    even = np.flatnonzero(np.arange(14) % 2 == 0)
    x = g.values.astype(float)[even]

    def rho(d):
        return np.stack([ind.spearman(x[..., r], d) for r in range(3)], -1)

    a, b = rho(g.distances[even]), rho(2.0 - g.distances[even])
    ok = ~np.isnan(a).any(1) & ~np.isnan(b).any(1)
    assert pair["n_cases"] == ok.sum()
    _check(pair, _reference(a[ok], b[ok]), g.run.name)


def test_several_methods_are_holm_adjusted_per_metric():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(25, 1)) + rng.normal(0, 0.2, size=(1, 4))
    scores = {f"m{i}": base + 0.15 * i + rng.normal(0, 0.4, size=(25, 4)) for i in range(3)}
    pairs = readers_random_pairs(scores, options_parse(), "fom")
    assert [(p["a"], p["b"]) for p in pairs] == [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    expected = multipletests([p["p_value"] for p in pairs], method="holm")[1]
    assert [p["p_holm"] for p in pairs] == pytest.approx(expected)
    for p in pairs:  # each pair: the loop implementation on the two methods' scores
        _check(p | {"p_holm": p["p_value"]}, _reference(scores[p["a"]], scores[p["b"]]), p["a"])
