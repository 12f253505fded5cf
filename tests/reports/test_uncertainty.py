"""Bootstrap intervals (cases, optionally readers) and p-values: reproduced by naive loops and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from reports import stats as S
from reports.build import report_for_study
from reports.options import options_parse
from reports.tables import report_tables
from tests.reports import independent as ind

N_RESAMPLES, SEED = 700, 3


def _draws(n_cases: int, n_resamples: int = N_RESAMPLES, seed: int = SEED, batch: int = 500) -> np.ndarray:
    """The case indices of each resample, drawn as reports.stats.bootstrap_ci draws them (batches of 500)."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.integers(0, n_cases, size=(min(batch, n_resamples - s), n_cases)) for s in range(0, n_resamples, batch)]
    )


def _ci(values: list[float]) -> list[float]:
    return list(np.nanpercentile(values, [2.5, 97.5]))


@pytest.fixture
def choose(generate):
    return generate(mode="choose_k", n_cases=24, n_readers=3, q=0.6, seed=21)


@pytest.fixture
def ranked(generate):
    return generate(mode="rank_all", n_cases=24, n_readers=3, q=0.5, seed=22)


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(n_resamples=N_RESAMPLES, seed=SEED, **kw))


def test_report_states_resamples_seed_and_unit(choose):
    report = _report(choose)
    assert report["uncertainty"]["n_resamples"] == N_RESAMPLES and report["uncertainty"]["seed"] == SEED
    assert report["uncertainty"]["unit"] == "cases (queries)"
    assert report["options"]["n_resamples"] == N_RESAMPLES


def _bca(statistic, n_cases: int) -> list[float]:
    """The report's interval by hand: BCa (expanded level) from naive resamples and a naive case jackknife."""
    keep = [np.delete(np.arange(n_cases), c) for c in range(n_cases)]
    return ind.bca_expanded(
        [statistic(i) for i in _draws(n_cases)], statistic(np.arange(n_cases)), [statistic(i) for i in keep]
    )


def test_fleiss_and_kappa_intervals_equal_a_naive_case_bootstrap(choose):
    s = _report(choose)["choose_k"]
    sel = choose.values.astype(bool)
    assert [s["fleiss_kappa"]["ci_low"], s["fleiss_kappa"]["ci_high"]] == pytest.approx(
        _bca(lambda i: ind.fleiss(sel[i]), 24)
    )
    cons, model = ind.consensus(sel, 5), ind.k_nearest(choose.distances, 5)
    m = s["methods"][choose.run.name]
    assert [m["cohen_kappa_vs_consensus"]["ci_low"], m["cohen_kappa_vs_consensus"]["ci_high"]] == pytest.approx(
        _bca(lambda i: cohen_kappa_score(cons[i].ravel(), model[i].ravel()), 24)
    )
    agree = _bca(lambda i: np.mean([ind.percent(sel[i][..., r], model[i]) for r in range(3)]), 24)
    assert [m["mean_reader_agreement"]["ci_low"], m["mean_reader_agreement"]["ci_high"]] == pytest.approx(agree)
    assert m["cohen_kappa_vs_consensus"]["resampled"] == "cases"


def test_ndcg_interval_equals_a_naive_case_bootstrap(ranked):
    s = _report(ranked)["ranking"]
    per_case = ind.ndcg(ind.ranks_of(ranked.distances), ranked.values[..., 0].astype(int), 10)
    got = s["compared"][ranked.run.name]["metrics"]["ndcg@10"]
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(_bca(lambda i: per_case[i].mean(), 24))
    assert got["ci_low"] <= got["estimate"] <= got["ci_high"]


def test_same_seed_same_intervals_other_seed_other_intervals(choose):
    a, b = _report(choose)["choose_k"], _report(choose)["choose_k"]
    c = report_for_study(study=choose.study, options=options_parse(n_resamples=N_RESAMPLES, seed=SEED + 1))
    assert a["fleiss_kappa"] == b["fleiss_kappa"]
    assert a["fleiss_kappa"]["ci_low"] != c["choose_k"]["fleiss_kappa"]["ci_low"]


def test_readers_too_resamples_readers_where_the_statistic_allows_it(choose):
    s = _report(choose, readers_too=True)["choose_k"]
    assert s["fleiss_kappa"]["resampled"] == "cases+readers"
    assert s["methods"][choose.run.name]["mean_reader_agreement"]["resampled"] == "cases+readers"
    # the consensus is fixed by all readers: its kappa against a method resamples cases only (said so)
    assert s["methods"][choose.run.name]["cohen_kappa_vs_consensus"]["resampled"] == "cases"


def test_no_bootstrap_means_no_intervals_and_no_p_values(choose):
    report = report_for_study(study=choose.study, options=options_parse())
    assert report["uncertainty"] is None and report["tests"] is None
    assert report["choose_k"]["fleiss_kappa"]["ci_low"] is None


def test_ranking_p_values_equal_direct_tests(ranked, generate):
    report = _report(ranked)
    truth = ranked.values[..., 0].astype(int)
    model = ind.ranks_of(ranked.distances)
    direct = S.permutation_test_vs_random(model, truth, p=10, n_resamples=N_RESAMPLES, seed=SEED)
    assert report["tests"]["vs_random"][ranked.run.name]["ndcg@10"] == pytest.approx(direct)
    perfect = generate(mode="rank_all", n_cases=20, n_readers=2, q=1.0, seed=4)
    p = _report(perfect)["tests"]["vs_random"][perfect.run.name]["ndcg@3"]["p_value"]
    assert p == pytest.approx(1 / (N_RESAMPLES + 1))  # no random order does as well as the truth


def test_choose_k_p_values_against_chance_and_between_methods(generate):
    g = generate(mode="choose_k", n_cases=20, n_readers=3, q=0.8, seed=8, partial_method=True)
    report = _report(g)
    sel = g.values.astype(bool)
    model = ind.k_nearest(g.distances, 5)
    per_case = np.array([np.mean([ind.percent(sel[c, :, r], model[c]) for r in range(3)]) for c in range(20)])
    vs = report["tests"]["vs_random"][g.run.name]
    assert vs["ttest_p"] == pytest.approx(sps.ttest_1samp(per_case - 50.0, 0.0, alternative="greater").pvalue)
    assert vs["permutation_p"] < 0.01 and vs["chance"] == 50.0
    pair = report["tests"]["method_vs_method"][0]
    assert {pair["a"], pair["b"]} == {g.run.name, "bm25"} and pair["n"] == 10  # bm25 ranks every other case
    other = ind.k_nearest(2.0 - g.distances, 5)
    per_case_b = np.array([np.mean([ind.percent(sel[c, :, r], other[c]) for r in range(3)]) for c in range(20)])
    common = np.arange(20) % 2 == 0
    a, b = (per_case, per_case_b) if pair["a"] == g.run.name else (per_case_b, per_case)
    assert pair["ttest_p"] == pytest.approx(sps.ttest_rel(a[common], b[common]).pvalue)
    assert pair["mean_difference"] == pytest.approx(np.mean(a[common] - b[common]))
    # 10 common cases: every sign pattern enumerated (scipy's exact test); 20 cases: simulated, with its s.e.
    exact = sps.permutation_test(
        (a[common], b[common]), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        n_resamples=np.inf,
    )  # fmt: skip
    assert pair["permutation_method"] == "exact" and pair["permutation_mc_se"] is None
    assert pair["permutation_p"] == pytest.approx(exact.pvalue, rel=1e-12)
    assert vs["permutation_method"] == "monte carlo"
    assert vs["permutation_mc_se"] == pytest.approx(
        np.sqrt(vs["permutation_p"] * (1 - vs["permutation_p"]) / N_RESAMPLES)
    )
    tests = [t for t in report_tables(report) if t["title"] == "Hypothesis tests"][0]
    assert "Monte Carlo s.e. of p" in tests["columns"] and "exact" in [row[5] for row in tests["rows"]]
    assert f"never below 1/{N_RESAMPLES + 1}" in tests["note"] and "2^n sign patterns" in tests["note"]


def test_rating_intervals(generate):
    g = generate(mode="rate", n_cases=15, n_candidates=6, n_readers=3, q=0.6, seed=9)
    s = _report(g)["rating"]
    icc = s["icc"]["ICC(A,1)"]
    assert icc["ci_low"] < icc["estimate"] < icc["ci_high"] and icc["resampled"] == "cases"
    wk = s["weighted_kappa"]["mean"]
    assert wk["ci_low"] <= wk["estimate"] <= wk["ci_high"]


def test_readers_too_with_two_readers_is_declined_and_says_so(generate):
    """Issue 14: with 2 readers the reader variance has 1 degree of freedom (the two-way bootstrap and the OR
    interval covered 88–91 %); the report keeps the case interval, says "resampled": "cases" and why."""
    g = generate(mode="rate", n_cases=15, n_candidates=6, n_readers=2, q=0.6, seed=9)
    report = _report(g, readers_too=True)
    icc = report["rating"]["icc"]["ICC(A,1)"]
    cases = _report(g)["rating"]["icc"]["ICC(A,1)"]
    assert icc["resampled"] == "cases" and "≥ 3 readers" in icc["readers_note"]
    assert (icc["ci_low"], icc["ci_high"]) == (cases["ci_low"], cases["ci_high"]) and "readers_note" not in cases
    assert icc["readers_note"] in " ".join(t["note"] for t in report_tables(report))  # the page says it too
    assert report["rating"]["weighted_kappa"]["mean"]["resampled"] == "cases"


def test_readers_too_mean_over_two_other_readers_is_the_case_interval(ranked):
    both = _report(ranked, readers_too=True)["ranking"]["other_readers_mean"]
    cases = _report(ranked)["ranking"]["other_readers_mean"]
    for metric, value in both.items():
        assert value["resampled"] == "cases" and "treats the readers as fixed" in value["readers_note"]
        assert (value["ci_low"], value["ci_high"]) == (cases[metric]["ci_low"], cases[metric]["ci_high"])


def _icc_readers_random_by_hand(estimate, cases, readers, both):
    """ICC(A,1), readers too (docs/reports.md#uncertainty): on the Fisher z scale, the readers' jackknife variance
    (no floor) + the case jackknife variance less the case noise of the readers' jackknife (≥ 0), t on R − 1 df."""
    estimate, cases, readers, both = (np.arctanh(np.asarray(v, float)) for v in (estimate, cases, readers, both))
    k, r = both.shape

    def jack_var(v):
        return (len(v) - 1) / len(v) * ((v - v.mean()) ** 2).sum()

    d = both - both.mean(1, keepdims=True)
    c = (r - 1) / r * sum(jack_var(d[:, j]) for j in range(r))
    v_c, v_r = jack_var(cases), jack_var(readers)
    half = sps.t.ppf(0.975, r - 1) * np.sqrt(v_r + max(v_c - c, 0.0))
    return list(np.tanh([estimate - half, estimate + half]))


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize("seed", [9, 3])  # 3: v_R < c, where the floored rule put c on K − 1 df instead
def test_readers_too_icc_of_three_readers_is_the_jackknife_over_cases_and_readers(generate, seed):
    """Readers random (issue 14): ICC(A,1) (pingouin) without each case, each reader and both, on the Fisher z
    scale, t on R − 1 df; the earlier case interval + full reader jackknife covered 97.8 %, the two-way bootstrap
    85 %, the reader term floored on Satterthwaite df 92–93 %, McGraw & Wong's F interval 60 %."""
    g = generate(mode="rate", n_cases=15, n_candidates=6, n_readers=3, q=0.6, seed=seed)
    report = _report(g, readers_too=True)
    icc = report["rating"]["icc"]["ICC(A,1)"]
    assert icc["resampled"] == "cases+readers"
    assert "jackknife" in icc["readers_rule"] and "R − 1 degrees" in icc["readers_rule"]
    assert icc["readers_rule"] in " ".join(t["note"] for t in report_tables(report))
    items = g.values.astype(float).reshape(-1, 3)
    case_of = np.arange(len(items)) // 6

    def a1(k=None, j=None):
        x = items if k is None else items[case_of != k]
        return ind.icc(x if j is None else np.delete(x, j, axis=1))["ICC2"]

    expected = _icc_readers_random_by_hand(
        a1(),
        [a1(k) for k in range(15)],
        [a1(None, j) for j in range(3)],
        np.array([[a1(k, j) for j in range(3)] for k in range(15)]),
    )
    assert [icc["ci_low"], icc["ci_high"]] == pytest.approx(expected)
    assert icc["ci_low"] < icc["estimate"] < icc["ci_high"] < 1.0


def test_readers_too_mean_agreement_of_three_readers_is_the_floored_or_interval(choose):
    """Readers random (issue 14): the mean reader agreement with a method's k nearest gets the single-method
    OR interval with MS(R) floored at Var − Cov2 (by loops); Hillis' plug-in df alone covered 92–93 %."""
    s = _report(choose, readers_too=True)["choose_k"]
    block = s["methods"][choose.run.name]["mean_reader_agreement"]
    sel = choose.values.astype(bool)
    chosen = ind.k_nearest(choose.distances, 5)
    y = np.array([[ind.percent(sel[c, :, r], chosen[c]) for r in range(3)] for c in range(24)])
    theta = y.mean(0)
    jack = (y.sum(0) - y) / 23
    dev = jack - jack.mean(0)
    cov = 23 / 24 * dev.T @ dev
    var, cov2 = np.diag(cov).mean(), cov[~np.eye(3, dtype=bool)].mean()
    ms_r = theta.var(ddof=1)
    term1, df1 = (ms_r, 2) if ms_r >= var - cov2 else (var - cov2, 23)
    term2 = 3 * max(cov2, 0.0)
    den = term1 + term2
    half = sps.t.ppf(0.975, den**2 / (term1**2 / df1 + term2**2 / 23)) * np.sqrt(den / 3)
    assert block["resampled"] == "cases+readers" and block["estimate"] == pytest.approx(y.mean())
    report = _report(choose, readers_too=True)
    assert (
        "Obuchowski" in report["uncertainty"]["readers_random"]
        and _report(choose)["uncertainty"]["readers_random"] is None
    )
    assert [block["ci_low"], block["ci_high"]] == pytest.approx([y.mean() - half, y.mean() + half])
