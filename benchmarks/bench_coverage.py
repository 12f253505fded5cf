"""Coverage of every nominal 95 % interval the agreement report prints, on simulated studies with known truth.

Usage: python benchmarks/bench_coverage.py [--studies 1000] [--resamples 2000] [--cases 30] [--json]

Each simulated study (choose-5 of 10, rank-all of 10, rating 1–5 of 10; 3 readers, two methods)
is put through the report's own section code (``reports.choose_k`` / ``ranking`` / ``rating``
``section`` on an in-memory ``Analysis``: the same functions, options and bootstrap as a report,
cases resampled). The true value of each statistic is the same section's point estimate on one
study of ``--truth-cases`` cases drawn from the same model (same readers, same methods), so it is the
value the case bootstrap estimates. Coverage = share of studies whose interval contains the truth;
its Monte Carlo standard error is sqrt(c(1 − c)/n_studies). Goal (issue 14): every interval covers
93–97 %. Intervals with readers resampled too estimate a reader-population value and are not
simulated here. Exit status 1 when an interval is outside 93–97 %.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402
from reports import choose_k, ranking, rating  # noqa: E402
from reports.analysis import Analysis, MethodView  # noqa: E402
from reports.options import options_parse  # noqa: E402

N_CAND, N_READERS, K = 10, 3, 5
READER_NOISE = np.array([0.7, 1.0, 1.3])
METHOD_NOISE = {"good": 0.8, "weak": 1.6}
LOW, HIGH = 0.93, 0.97


def simulate(mode: str, n_cases: int, rng: np.random.Generator) -> Analysis:
    """One study: a latent similarity per (case, candidate); readers and methods see it through noise."""
    latent = rng.normal(size=(n_cases, N_CAND)) + rng.normal(0, 0.5, size=(n_cases, 1))
    perceived = latent[..., None] + READER_NOISE * rng.normal(size=(n_cases, N_CAND, N_READERS))
    if mode == "choose_k":
        values = np.argsort(np.argsort(-perceived, axis=1), axis=1) < K
    elif mode == "rank_all":
        values = np.argsort(np.argsort(-perceived, axis=1), axis=1) + 1
    else:
        bias = np.array([0.0, 0.3, -0.3])
        values = np.clip(np.round(3 + 0.9 * perceived + bias), 1, 5)
    methods = {}
    for name, noise in METHOD_NOISE.items():
        d = -(latent + noise * rng.normal(size=latent.shape))
        ranks = np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1) + 1
        methods[name] = MethodView(name, d, ranks, np.ones(n_cases, bool))
    return Analysis(mode, values, np.arange(n_cases), ["R1", "R2", "R3"], 0, methods, K, (1, 5))


SECTIONS = {"choose_k": choose_k.section, "rank_all": ranking.section, "rate": rating.section}


def intervals(section: dict, prefix: str = "") -> dict[str, dict]:
    """Every {estimate, ci_low, ci_high} in a section, by its path."""
    out = {}
    for key, value in section.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "ci_low" in value and "estimate" in value:
            out[path] = value
        elif isinstance(value, dict):
            out |= intervals(value, path + ".")
    return out


def run(mode: str, args: argparse.Namespace) -> list[list]:
    rng = np.random.default_rng(args.seed)
    o = options_parse(n_resamples=args.resamples, seed=1)
    truth = {
        k: v["estimate"]
        for k, v in intervals(SECTIONS[mode](simulate(mode, args.truth_cases, rng), o.analysis())).items()
    }
    hits = {k: [] for k in truth}
    below = {k: 0 for k in truth}
    for s in range(args.studies):
        sec = SECTIONS[mode](simulate(mode, args.cases, rng), options_parse(n_resamples=args.resamples, seed=s))
        for k, v in intervals(sec).items():
            if v["ci_low"] is None or truth.get(k) is None:
                continue
            hits[k].append(v["ci_low"] <= truth[k] <= v["ci_high"])
            below[k] += v["ci_high"] < truth[k]
    rows = []
    for k, h in hits.items():
        if not h:
            continue
        c = float(np.mean(h))
        se = float(np.sqrt(c * (1 - c) / len(h)))
        ok = "yes" if LOW <= c <= HIGH else "**no**"
        rows.append(
            [mode, k, f"{truth[k]:.3f}", f"{100 * c:.1f} %", f"{100 * se:.1f}", f"{100 * below[k] / len(h):.1f} %", ok]
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--truth-cases", type=int, default=20000)
    parser.add_argument("--modes", default="choose_k,rank_all,rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    add_record_arguments(parser)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [row for mode in args.modes.split(",") for row in run(mode, args)]
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps(rows, indent=1))
    columns = ["study", "interval", "true value", "coverage", "MC s.e. (points)", "wholly below truth", "93–97 %"]
    table = markdown_table(columns, rows)
    print(table)
    missed = [r[1] for r in rows if r[-1] != "yes"]
    record(
        "coverage",
        table,
        title=f"Coverage of the report's 95 % intervals ({args.studies} studies, {args.resamples} resamples each)",
        args=args,
        notes=(
            f"{args.cases} cases × {N_CAND} candidates × {N_READERS} readers per study, cases resampled; "
            f"truth: the same statistic on {args.truth_cases} cases. {elapsed:.0f} s. "
            + (f"Outside 93–97 %: {', '.join(missed)}." if missed else "Every interval covers 93–97 %.")
        ),
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
