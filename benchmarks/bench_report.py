"""Benchmark of the agreement report from the database (reports.build) on a large study.

Usage: python benchmarks/bench_report.py [--json] [--cases 1000] [--readers 10] [--candidates 10]
                                         [--resamples 2000] [--modes choose_k,rank_all,rate] [--blas-threads 1]

For each mode, a study of 1,000 cases × 10 readers × 10 candidates (plus a model run with
embeddings on disk) is written with bulk_create into a fresh database (SQLite in a temporary
folder, or the database named by DATABASE_URL), then the FULL report is timed from the
database: loading the answers, ranking every catalogue under the model run, every statistic,
the subgroup tables; once without bootstrap (goal ≤ 2 s) and once with 2,000 bootstrap
resamples and as many permutations for the p-values (goal ≤ 15 s).
Baseline, in the same run: the pure statistics (reports.stats.choose_k_summary /
ranking_summary / icc + pairwise weighted kappa) on arrays already in memory; the ratio
report / baseline is the overhead of the database layer and of everything the report adds
(subgroup and per-reader tables, extra statistics); `load` and `build` split the report time
into reading the database (answers, catalogues, model-run distances) and the statistics.
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402

GOAL_REPORT_S = 2.0
GOAL_BOOTSTRAP_S = 15.0


def setup_django(tmp: Path) -> None:
    """Settings on a throw-away DATA_DIR (SQLite there unless DATABASE_URL is set), migrated."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DATA_DIR"] = str(tmp)
    os.environ.setdefault("DEBUG", "true")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def baseline(gen, mode: str, k: int) -> None:
    """The pure statistics on in-memory arrays (what the report wraps), BLAS limited as in the report."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _baseline(gen, mode, k)


def _baseline(gen, mode: str, k: int) -> None:
    import numpy as np

    from reports import stats as S

    ranks = {"model": gen.model_ranks}
    if mode == "choose_k":
        S.choose_k_summary(gen.values.astype(bool), ranks, k)
    elif mode == "rank_all":
        S.ranking_summary(gen.values.astype(int), ranks, p=(3, 10))
    else:
        items = gen.values.reshape(-1, gen.values.shape[-1])
        S.icc(items, kind="ICC2")
        S.pairwise_cohen_kappa(items, weights="quadratic", labels=np.arange(1, 6))
        S.distance_rating_correlation(items, gen.distances.ravel())


def bench_mode(mode: str, args, tmp: Path) -> dict:
    """Generate one study of the mode in the database and time the report without and with bootstrap."""
    from reports.analysis import report_inputs
    from reports.build import report_build, report_for_study
    from reports.options import options_parse
    from tests.reports.factories import generate_study

    gen, t_gen = timed(
        generate_study,
        mode=mode,
        n_cases=args.cases,
        n_candidates=args.candidates,
        n_readers=args.readers,
        k=args.candidates // 2,
        q=0.6,
        seed=1,
        run_dir=tmp / "runs",
        name=f"bench {mode} {time.time_ns()}",
    )
    plain = options_parse(class_label="finding")
    report_for_study(study=gen.study, options=plain)  # warm-up: imports, embeddings cache, BLAS
    baseline(gen, mode, args.candidates // 2)
    _, t_base = timed(baseline, gen, mode, args.candidates // 2)
    report, t_report = timed(report_for_study, study=gen.study, options=plain)
    inputs, t_load = timed(report_inputs, study=gen.study, options=plain)
    _, t_build = timed(report_build, inputs, plain)
    boot = options_parse(class_label="finding", n_resamples=args.resamples, seed=0)
    booted, t_boot = timed(report_for_study, study=gen.study, options=boot)
    assert report["n_cases"] == args.cases and booted["uncertainty"]["n_resamples"] == args.resamples
    return {
        "mode": mode,
        "cases": args.cases,
        "readers": args.readers,
        "candidates": args.candidates,
        "generate_s": round(t_gen, 2),
        "baseline_stats_s": round(t_base, 4),
        "report_s": round(t_report, 3),
        "load_from_db_s": round(t_load, 3),
        "statistics_and_tables_s": round(t_build, 3),
        "overhead_ratio": round(t_report / t_base, 1),
        "report_bootstrap_s": round(t_boot, 2),
        "resamples": args.resamples,
        "goal_report_met": t_report <= GOAL_REPORT_S,
        "goal_bootstrap_met": t_boot <= GOAL_BOOTSTRAP_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--modes", default="choose_k,rank_all,rate")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OpenBLAS/OpenMP threads (e.g. 1 on a busy machine: threaded BLAS then spins)",
    )
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    if args.blas_threads:  # before numpy is imported (django.setup imports it)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.blas_threads)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as folder:
        tmp = Path(folder)
        setup_django(tmp)
        from django.db import connection

        rows = [bench_mode(mode, args, tmp) for mode in args.modes.split(",")]
        engine = connection.vendor
    ok = all(r["goal_report_met"] and r["goal_bootstrap_met"] for r in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "database": engine,
                    "blas_threads": args.blas_threads or "default",
                    "goals_s": {"report": GOAL_REPORT_S, "bootstrap": GOAL_BOOTSTRAP_S},
                    "results": rows,
                    "ok": ok,
                },
                indent=1,
            )
        )
    else:
        print(
            f"database: {engine}; BLAS threads: {args.blas_threads or 'default'}; "
            f"goals: report ≤ {GOAL_REPORT_S} s, bootstrap ≤ {GOAL_BOOTSTRAP_S} s"
        )
        print(
            f"{'mode':9} {'C×R×M':>14} {'stats (s)':>10} {'report (s)':>11} {'= load':>7} {'+ build':>8} "
            f"{'ratio':>6} {'+bootstrap (s)':>15}"
        )
        for r in rows:
            size = f"{r['cases']}×{r['readers']}×{r['candidates']}"
            print(
                f"{r['mode']:9} {size:>14} {r['baseline_stats_s']:>10.4f} {r['report_s']:>11.3f} "
                f"{r['load_from_db_s']:>7.3f} {r['statistics_and_tables_s']:>8.3f} "
                f"{r['overhead_ratio']:>6.1f} {r['report_bootstrap_s']:>15.2f}"
                f"{'' if r['goal_report_met'] and r['goal_bootstrap_met'] else '  GOAL MISSED'}"
            )
    _record(rows, engine, ok, args)
    return 0 if ok else 1


def _record(rows: list[dict], engine: str, ok: bool, args: argparse.Namespace) -> None:
    """The section `report.<database>` of docs/benchmarks.md (benchmarks/record.py)."""
    table = markdown_table(
        [
            "mode",
            "cases × readers × candidates",
            "pure stats",
            "report",
            "= load from DB",
            "+ statistics & tables",
            "ratio",
            f"+ {args.resamples:,} resamples",
        ],
        [
            [
                r["mode"],
                f"{r['cases']:,} × {r['readers']} × {r['candidates']}",
                f"{r['baseline_stats_s']:.3f} s",
                f"{r['report_s']:.2f} s",
                f"{r['load_from_db_s']:.2f} s",
                f"{r['statistics_and_tables_s']:.2f} s",
                f"{r['overhead_ratio']:.0f}",
                f"{r['report_bootstrap_s']:.1f} s",
            ]
            for r in rows
        ],
    )
    missed = [
        f"{r['mode']} ({'report' if not r['goal_report_met'] else 'bootstrap'})"
        for r in rows
        if not (r["goal_report_met"] and r["goal_bootstrap_met"])
    ]
    size = (
        ""
        if (args.cases, args.readers, args.candidates) == (1000, 10, 10)
        else (f".{args.cases}x{args.readers}x{args.candidates}")
    )
    record(
        "report",
        table,
        variant=f"{engine}{size}",
        title=f"Agreement report from the database ({engine})",
        args=args,
        notes=f"BLAS threads: {args.blas_threads or 'default'}. Goals: report ≤ {GOAL_REPORT_S:g} s, "
        f"≤ {GOAL_BOOTSTRAP_S:g} s with bootstrap — "
        + ("met in every mode." if ok else f"**missed**: {', '.join(missed)}."),
    )


if __name__ == "__main__":
    sys.exit(main())
