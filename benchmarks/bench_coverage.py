"""Coverage of every nominal 95 % interval the agreement report prints, on simulated studies with known truth.

Usage: python benchmarks/bench_coverage.py [--studies 1000] [--random-studies 500] [--resamples 2000] [--cases 30]
       [--scenarios cases,random] [--modes choose_k,rank_all,rate] [--only REGEX] [--json]

Each simulated study (choose-5 of 10, rank-all of 10, rating 1–5 of 10; 3 readers, two methods)
is put through the report's own section code (``reports.choose_k`` / ``ranking`` / ``rating``
``section`` on an in-memory ``Analysis``: the same functions, options and bootstrap as a report,
cases resampled). The true value of each statistic is the same section's point estimate on one
study of ``--truth-cases`` cases drawn from the same model (same readers, same methods), so it is the
value the case bootstrap estimates. Coverage = share of studies whose interval contains the truth;
its Monte Carlo standard error is sqrt(c(1 − c)/n_studies). Goal (issue 14): every interval covers
93–97 %. Exit status 1 when an interval is outside 93–97 %.

Readers as a random effect (``--random-studies``, scenario ``random``): each study's three readers are
drawn from a population (noise level and rating bias; the ground-truth reader of ranking studies is the
study's fixed reference). Each study is reported with readers resampled too (``readers_too``): the
intervals marked ``cases+readers`` (Fleiss κ, the mean reader agreements, ICC(A,1); the other readers' mean of a
3-reader ranking study has 2 readers, for which the report declines readers too and prints the case interval)
are checked against the population value over readers and cases, which is the same section's point
estimate on ``--truth-cases`` cases each read by its own readers. The same studies give the OR / Hillis
(MRMC) intervals of the method differences (``tests.readers_random``), checked against the population
mean difference from that same large study.

``--only REGEX`` keeps the rows whose "scenario study interval" matches (e.g. ``--only 'ICC|MRMC'``), to iterate
on a few intervals; record only full runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from reports import stats as S  # noqa: E402
from reports.analysis import Analysis, MethodView  # noqa: E402
from reports.options import options_parse  # noqa: E402

N_CAND, N_READERS, K = 10, 3, 5
READER_NOISE = np.array([0.7, 1.0, 1.3])
POPULATION_READERS = 2000  # readers of the study that gives the population ICC (150 left it uncertain by ±0.015)
POPULATION_CASES = 2000  # its cases (20,000 items; 400 left the value uncertain by about ±0.007)
METHOD_NOISE = {"good": 0.8, "weak": 1.6}
LOW, HIGH = 0.93, 0.97


def reader_population(n_cases: int, rng: np.random.Generator, readers: str, mode: str, n_readers: int) -> tuple:
    """Each reader's noise level and rating bias: fixed readers, readers drawn once per study, or fresh per case.

    ``fixed``: the three readers of every study are the same (σ 0.7, 1.0, 1.3; bias 0, +0.3, −0.3).
    ``random``: a study's readers are drawn from the population (σ = exp(N(0, 0.35)), bias N(0, 0.3)).
    ``fresh``: every case has its own readers from that population; one study of many such cases gives the
    population value over readers and cases of a mean over readers (each reader's effect averages out over the
    cases, as over readers). Not of the ICC, a ratio of variance components: see ``run_random``.
    In ranking studies the ground-truth reader (the first) is the study's designated reference, not a
    draw: σ = 1.0 in the random scenarios.
    """
    if readers == "fixed":
        return READER_NOISE, np.array([0.0, 0.3, -0.3])
    shape = (n_readers,) if readers == "random" else (n_cases, 1, n_readers)
    sigma = np.exp(rng.normal(0.0, 0.35, size=shape))
    bias = rng.normal(0.0, 0.3, size=shape)
    if mode == "rank_all":
        sigma[..., 0] = 1.0
    return sigma, bias


def simulate(
    mode: str, n_cases: int, rng: np.random.Generator, readers: str = "fixed", n_readers: int = N_READERS
) -> Analysis:
    """One study: a latent similarity per (case, candidate); readers and methods see it through noise."""
    latent = rng.normal(size=(n_cases, N_CAND)) + rng.normal(0, 0.5, size=(n_cases, 1))
    sigma, bias = reader_population(n_cases, rng, readers, mode, n_readers)
    perceived = latent[..., None] + sigma * rng.normal(size=(n_cases, N_CAND, n_readers))
    if mode == "choose_k":
        values = np.argsort(np.argsort(-perceived, axis=1), axis=1) < K
    elif mode == "rank_all":
        values = np.argsort(np.argsort(-perceived, axis=1), axis=1) + 1
    else:
        values = np.clip(np.round(3 + 0.9 * perceived + bias), 1, 5)
    methods = {}
    for name, noise in METHOD_NOISE.items():
        d = -(latent + noise * rng.normal(size=latent.shape))
        ranks = np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1) + 1
        methods[name] = MethodView(name, d, ranks, np.ones(n_cases, bool))
    names = [f"R{r + 1}" for r in range(n_readers)]
    return Analysis(mode, values, np.arange(n_cases), names, 0, methods, K, (1, 5))


MODULES = {"choose_k": choose_k, "rank_all": ranking, "rate": rating}
SECTIONS = {mode: module.section for mode, module in MODULES.items()}


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


def _row(scenario: str, mode: str, key: str, truth: float, hits: list[bool], below: int) -> list:
    c = float(np.mean(hits))
    se = float(np.sqrt(c * (1 - c) / len(hits)))
    ok = "yes" if LOW <= c <= HIGH else "**no**"
    return [
        scenario,
        mode,
        key,
        f"{truth:.3f}",
        f"{100 * c:.1f} %",
        f"{100 * se:.1f}",
        f"{100 * below / len(hits):.1f} %",
        ok,
    ]


def _rows(scenario: str, mode: str, truth: dict, hits: dict, below: dict) -> list[list]:
    return [_row(scenario, mode, k, truth[k], h, below[k]) for k, h in hits.items() if h]


def run(mode: str, args: argparse.Namespace) -> list[list]:
    """Fixed readers, cases resampled: every interval of the section (the default report)."""
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
    return _rows("cases", mode, truth, hits, below)


def readers_random(an: Analysis, mode: str, section: dict) -> dict[str, dict]:
    """The report's OR / Hillis comparisons of the methods (readers and cases random), by metric.

    The OR analysis does not depend on the number of resamples: the permutation tests beside it get one.
    """
    tests = MODULES[mode].tests(an, section, options_parse(n_resamples=1))
    return {f"{p['metric']}: {p['a']} − {p['b']}": p for p in tests["readers_random"]["method_vs_method"]}


def run_random(mode: str, args: argparse.Namespace) -> list[list]:
    """Readers drawn from a population per study: the readers-too intervals and the MRMC (OR / Hillis) intervals.

    Truth: the population value over readers and cases, i.e. the same code's point estimate (for MRMC: the
    mean difference) on one study of ``--truth-cases`` cases, each read by its own readers. That is right for
    means over readers (agreements, nDCG, κ of choose-k, whose chance level is fixed); the ICC is a ratio of
    variance components, so its population value is the ICC of ``POPULATION_READERS`` readers drawn once
    (on ``POPULATION_CASES`` cases, with their own random generator).
    """
    rng = np.random.default_rng(args.seed + 1)
    big = simulate(mode, args.truth_cases, rng, readers="fresh")
    o = options_parse(n_resamples=args.resamples, seed=1, readers_too=True)
    big_section = SECTIONS[mode](big, o.analysis())
    truth = {k: v["estimate"] for k, v in intervals(big_section).items()}
    truth_or = {k: p["mean_difference"] for k, p in readers_random(big, mode, big_section).items()}
    if mode == "rate":  # the ICC is not a mean over readers: its population value needs many readers
        many = simulate(mode, POPULATION_CASES, np.random.default_rng(args.seed + 2), "random", POPULATION_READERS)
        truth["icc.ICC(A,1)"] = S.icc(many.values.astype(float).reshape(-1, POPULATION_READERS), kind="ICC2")
    hits: dict[str, list] = {}
    below: dict[str, int] = {}
    hits_or: dict[str, list] = {k: [] for k in truth_or}
    below_or = dict.fromkeys(truth_or, 0)
    for s in range(args.random_studies):
        an = simulate(mode, args.cases, rng, readers="random")
        sec = SECTIONS[mode](an, options_parse(n_resamples=args.resamples, seed=s, readers_too=True))
        for k, v in intervals(sec).items():
            if v["ci_low"] is None or truth.get(k) is None or "readers" not in (v["resampled"] or ""):
                continue
            hits.setdefault(k, []).append(v["ci_low"] <= truth[k] <= v["ci_high"])
            below[k] = below.get(k, 0) + (v["ci_high"] < truth[k])
        for k, p in readers_random(an, mode, sec).items():
            hits_or[k].append(p["ci_low"] <= truth_or[k] <= p["ci_high"])
            below_or[k] += p["ci_high"] < truth_or[k]
    return _rows("cases+readers", mode, truth, hits, below) + _rows(
        "MRMC (OR/Hillis)", mode, truth_or, hits_or, below_or
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--random-studies", type=int, default=500, help="studies with readers drawn at random")
    parser.add_argument("--scenarios", default="cases,random", help="cases: fixed readers; random: readers drawn")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--truth-cases", type=int, default=20000)
    parser.add_argument("--modes", default="choose_k,rank_all,rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help='regex on "scenario study interval": keep the matching rows')
    parser.add_argument("--json", action="store_true")
    add_record_arguments(parser)
    args = parser.parse_args()
    args.no_record = args.no_record or bool(args.only)  # a subset is a trial, never the recorded table
    start = time.perf_counter()
    scenarios = args.scenarios.split(",")
    rows = [row for mode in args.modes.split(",") if "cases" in scenarios for row in run(mode, args)]
    rows += [row for mode in args.modes.split(",") if "random" in scenarios for row in run_random(mode, args)]
    if args.only:
        rows = [row for row in rows if re.search(args.only, f"{row[0]} {row[1]} {row[2]}")]
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps(rows, indent=1))
    columns = [
        "resampled",
        "study",
        "interval",
        "true value",
        "coverage",
        "MC s.e. (points)",
        "wholly below truth",
        "93–97 %",
    ]
    table = markdown_table(columns, rows)
    print(table)
    missed = [f"{r[1]} {r[2]} ({r[0]})" for r in rows if r[-1] != "yes"]
    record(
        "coverage",
        table,
        title=(
            f"Coverage of the report's 95 % intervals ({args.studies} studies with fixed readers, "
            f"{args.random_studies} with readers drawn at random; {args.resamples} resamples each)"
        ),
        args=args,
        notes=(
            f"{args.cases} cases × {N_CAND} candidates × {N_READERS} readers per study. *cases*: fixed readers, "
            f"cases resampled, truth: the same statistic on {args.truth_cases} cases. *cases+readers*: readers drawn "
            "from a population per study, the report's readers-too intervals, truth: the same statistic on "
            f"{args.truth_cases} cases each read by its own readers (the population value); a mean over the 2 other "
            "readers of a ranking study has no readers-too interval (the report declines it with 2 readers and "
            "prints the case interval, checked under *cases*). *MRMC*: the OR / Hillis intervals of the method "
            "differences (method × reader variance kept ≥ 0) on those studies, truth: the population mean "
            "difference. "
            f"MC s.e. = sqrt(c(1 − c)/n studies). {elapsed:.0f} s. "
            + (f"Outside 93–97 %: {', '.join(missed)}." if missed else "Every interval covers 93–97 %.")
        ),
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
