"""Benchmark of reports.stats on a large simulated reader study, against a naive baseline.

Usage: python benchmarks/bench_stats.py [--json] [--cases 1000] [--baseline-resamples 100]

Study: 1,000 cases x 10 candidates x 10 readers, choose-5 and rank-all, two methods.
Goals: full choose-k + ranking report (no bootstrap) <= 2 s; 2,000 case-bootstrap resamples of
Fleiss' kappa and of mean nDCG@10 <= 15 s.  The baseline loops per case / per resample with
statsmodels, scikit-learn, scipy and the krippendorff package, recomputing from raw arrays; its
bootstrap is timed on a subset of resamples and extrapolated (marked as such).
Exit status 1 when a goal is missed or the fast and naive numbers disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import krippendorff  # noqa: E402
from scipy import stats as sps  # noqa: E402
from sklearn.metrics import cohen_kappa_score, ndcg_score  # noqa: E402
from statsmodels.stats.inter_rater import aggregate_raters  # noqa: E402
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss  # noqa: E402

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402
from reports import stats as S  # noqa: E402

GOAL_REPORT_S = 2.0
GOAL_BOOTSTRAP_S = 15.0


def simulate(n_cases: int, n_cand: int = 10, n_readers: int = 10, k: int = 5, seed: int = 0) -> dict:
    """Readers and two methods see a shared latent similarity through independent noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_cases, n_cand))
    perceived = latent[..., None] + rng.normal(size=(n_cases, n_cand, n_readers))
    reader_ranks = np.argsort(np.argsort(-perceived, axis=1), axis=1) + 1
    methods = {
        "vit": S.ranks_from_scores(latent + 0.7 * rng.normal(size=latent.shape)),
        "ssim": S.ranks_from_scores(latent + 2.0 * rng.normal(size=latent.shape)),
    }
    return {"selections": reader_ranks <= k, "reader_ranks": reader_ranks, "methods": methods, "k": k}


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def fast_report(data: dict) -> dict:
    """The platform's vectorised choose-k and ranking summaries."""
    choose = S.choose_k_summary(data["selections"], data["methods"], data["k"])
    ranking = S.ranking_summary(data["reader_ranks"], data["methods"], p=(3, 10))
    return {"choose": choose, "ranking": ranking}


def naive_report(data: dict) -> dict:
    """Loop-per-case baseline with statsmodels / sklearn / scipy / krippendorff."""
    sel, k = data["selections"].astype(int), data["k"]
    n_cases, n_cand, n_readers = sel.shape
    items = sel.reshape(-1, n_readers)
    fleiss = sm_fleiss(aggregate_raters(items, n_cat=2)[0])
    pairs = itertools.combinations(range(n_readers), 2)
    pairwise = {(i, j): cohen_kappa_score(items[:, i], items[:, j]) for i, j in pairs}
    alpha = krippendorff.alpha(items.T, level_of_measurement="nominal")
    tb = data["methods"]["vit"]
    consensus = np.zeros_like(sel[..., 0])
    for c in range(n_cases):
        votes = sel[c].sum(1)
        chosen = sorted(range(n_cand), key=lambda i: (-votes[i], tb[c, i], i))[:k]
        consensus[c, chosen] = 1
    kappas = {name: cohen_kappa_score(consensus.ravel(), (r <= k).ravel()) for name, r in data["methods"].items()}
    truth = data["reader_ranks"][..., 0]
    gains = 2 ** S.relevance_from_ranks(truth) - 1
    compared = dict(data["methods"], **{f"R{r + 1}": data["reader_ranks"][..., r] for r in range(1, n_readers)})
    ndcg, tau = {}, {}
    for name, ranks in compared.items():
        for p in (3, 10):
            ndcg[name, p] = np.mean([ndcg_score(gains[c : c + 1], -ranks[c : c + 1], k=p) for c in range(n_cases)])
        tau[name] = np.mean([sps.kendalltau(ranks[c], truth[c]).statistic for c in range(n_cases)])
        np.mean([sps.spearmanr(ranks[c], truth[c]).statistic for c in range(n_cases)])
    return {"fleiss": fleiss, "pairwise": pairwise, "alpha": alpha, "kappas": kappas, "ndcg": ndcg, "tau": tau}


def check_reports(fast: dict, naive: dict) -> float:
    """Largest absolute difference between the fast and naive reports."""
    choose, ranking = fast["choose"], fast["ranking"]
    diffs = [choose["fleiss_kappa"] - naive["fleiss"], choose["krippendorff_alpha"] - naive["alpha"]]
    diffs += [choose["pairwise_cohen_kappa"][i, j] - v for (i, j), v in naive["pairwise"].items()]
    diffs += [choose["methods"][m]["cohen_kappa_vs_consensus"] - v for m, v in naive["kappas"].items()]
    diffs += [ranking["mean"][m][f"ndcg@{p}"] - v for (m, p), v in naive["ndcg"].items()]
    diffs += [ranking["mean"][m]["kendall_tau"] - v for m, v in naive["tau"].items()]
    return float(np.max(np.abs(diffs)))


def fast_bootstrap(data: dict, fast: dict, n_resamples: int) -> tuple[dict, dict]:
    """Case bootstrap of Fleiss' kappa (cases, and cases + readers) and of mean nDCG@10, timed each."""
    stats = S.agreement_stats(data["selections"])
    n_cases, _, n_readers = data["selections"].shape
    ndcg = fast["ranking"]["per_case"]["vit"]["ndcg@10"]
    runs = {
        "fleiss_cases": (S.fleiss_statistic(stats), {}),
        "ndcg10_vit": (S.mean_statistic(ndcg), {}),
        "fleiss_cases_readers": (S.fleiss_statistic(stats), {"n_readers": n_readers}),
    }
    cis, seconds = {}, {}
    for name, (statistic, extra) in runs.items():
        cis[name], seconds[name] = timed(S.bootstrap_ci, statistic, n_cases, n_resamples=n_resamples, seed=1, **extra)
    return cis, seconds


def naive_bootstrap(data: dict, n_resamples: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Recompute Fleiss (statsmodels) and mean nDCG@10 (sklearn) from raw arrays per resample."""
    sel = data["selections"].astype(int)
    n_cases, _, n_readers = sel.shape
    truth = data["reader_ranks"][..., 0]
    gains = 2 ** S.relevance_from_ranks(truth) - 1
    scores = -data["methods"]["vit"].astype(float)
    idx = np.random.default_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))
    fleiss, ndcg = np.empty(n_resamples), np.empty(n_resamples)
    for b in range(n_resamples):
        fleiss[b] = sm_fleiss(aggregate_raters(sel[idx[b]].reshape(-1, n_readers), n_cat=2)[0])
        ndcg[b] = ndcg_score(gains[idx[b]], scores[idx[b]], k=10)
    return idx, np.stack([fleiss, ndcg])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--baseline-resamples", type=int, default=100, help="naive bootstrap subset (extrapolated)")
    add_record_arguments(parser)
    args = parser.parse_args(argv)

    data = simulate(args.cases)
    fast_report(data)  # warm-up (imports, BLAS initialisation)
    fast, t_fast = timed(fast_report, data)
    naive, t_naive = timed(naive_report, data)
    report_diff = check_reports(fast, naive)

    boots, boot_seconds = fast_bootstrap(data, fast, args.resamples)
    t_boot = sum(boot_seconds.values())
    t_boot_same = boot_seconds["fleiss_cases"] + boot_seconds["ndcg10_vit"]  # what the baseline computes
    (idx, naive_vals), t_naive_sub = timed(naive_bootstrap, data, args.baseline_resamples)
    t_naive_boot = t_naive_sub * args.resamples / args.baseline_resamples
    weights = np.stack([np.bincount(row, minlength=args.cases) for row in idx]).astype(float)
    stats = S.agreement_stats(data["selections"])
    ndcg = fast["ranking"]["per_case"]["vit"]["ndcg@10"]
    fast_vals = np.stack([S.fleiss_statistic(stats)(weights), S.mean_statistic(ndcg)(weights)])
    boot_diff = float(np.max(np.abs(fast_vals - naive_vals)))

    goals = {
        f"report <= {GOAL_REPORT_S} s": t_fast <= GOAL_REPORT_S,
        f"bootstrap <= {GOAL_BOOTSTRAP_S} s": t_boot <= GOAL_BOOTSTRAP_S,
        "fast == naive (1e-9)": max(report_diff, boot_diff) < 1e-9,
    }
    result = {
        "study": {"cases": args.cases, "candidates": 10, "readers": 10, "k": data["k"]},
        "report_seconds": {"fast": t_fast, "naive": t_naive, "speedup": t_naive / t_fast},
        "bootstrap_seconds": {
            "fast_total": t_boot,
            "fast_per_statistic": boot_seconds,
            "fast_same_as_naive": t_boot_same,
            "naive_extrapolated": t_naive_boot,
            "naive_measured_resamples": args.baseline_resamples,
            "speedup": t_naive_boot / t_boot_same,
            "resamples": args.resamples,
        },
        "max_abs_difference": {"report": report_diff, "bootstrap": boot_diff},
        "estimates": {
            name: {key: ci[key] for key in ("estimate", "low", "high", "resampled")} for name, ci in boots.items()
        },
        "goals": goals,
        "goals_met": all(goals.values()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rs, bs = result["report_seconds"], result["bootstrap_seconds"]
        print(f"study: {args.cases} cases x 10 candidates x 10 readers (choose-5 and rank-all), 2 methods")
        print(f"report    fast {rs['fast']:8.3f} s   naive {rs['naive']:8.3f} s   speed-up {rs['speedup']:7.1f}x")
        print(
            f"bootstrap fast {bs['fast_same_as_naive']:8.3f} s   naive {bs['naive_extrapolated']:8.3f} s "
            f"(extrapolated from {args.baseline_resamples} of {args.resamples})   speed-up {bs['speedup']:7.1f}x"
        )
        print(f"  ({args.resamples} resamples each of Fleiss kappa and mean nDCG@10 over cases)")
        print(f"bootstrap all three statistics below: {bs['fast_total']:.3f} s")
        for name, ci in result["estimates"].items():
            print(f"  {name:22s} {ci['estimate']:.4f}  [{ci['low']:.4f}, {ci['high']:.4f}]  ({ci['resampled']})")
        print(f"max |fast - naive|: report {report_diff:.2e}, bootstrap {boot_diff:.2e}")
        for goal, ok in goals.items():
            print(f"{'PASS' if ok else 'FAIL'}  {goal}")
    _record(result, args)
    return 0 if result["goals_met"] else 1


def _record(result: dict, args: argparse.Namespace) -> None:
    """The section `stats` of docs/benchmarks.md (benchmarks/record.py)."""
    rs, bs = result["report_seconds"], result["bootstrap_seconds"]
    table = markdown_table(
        ["what", "reports.stats", "naive loops", "speed-up"],
        [
            [
                "choose-k + ranking report, no bootstrap",
                f"{rs['fast']:.3f} s",
                f"{rs['naive']:.3f} s",
                f"**{rs['speedup']:,.0f}×**",
            ],
            [
                f"{bs['resamples']:,} resamples of Fleiss κ and mean nDCG@10",
                f"{bs['fast_same_as_naive']:.3f} s",
                f"{bs['naive_extrapolated']:.1f} s (from {bs['naive_measured_resamples']} resamples)",
                f"**{bs['speedup']:,.0f}×**",
            ],
        ],
    )
    diff = result["max_abs_difference"]
    goals = "; ".join(f"{goal}: {'met' if ok else '**not met**'}" for goal, ok in result["goals"].items())
    record(
        "stats",
        table,
        title="Statistics on arrays",
        args=args,
        variant="" if args.cases == 1000 else f"{args.cases}cases",
        notes=f"{args.cases:,} cases × 10 candidates × 10 readers (choose-5 and rank-all), 2 methods. "
        f"All three bootstrapped statistics: {bs['fast_total']:.3f} s. Largest difference from the naive "
        f"numbers: {max(diff.values()):.1e}. Goals — {goals}.",
    )


if __name__ == "__main__":
    sys.exit(main())
