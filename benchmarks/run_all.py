"""Run every benchmark once, in sequence (`make bench`); each prints its own ratio to a baseline.

Quick by default (FAISS at 100k vectors); `--full` adds the 1M-vector FAISS run (about 10 minutes
of index building on two cores). Each script writes its result into its own section of
docs/benchmarks.md (benchmarks/record.py), with the date, the machine and the commit;
`--no-record` only prints. A new bench_*.py belongs in QUICK (tests/test_bench_record.py checks).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK = [
    ["bench_stats.py"],
    ["bench_coverage.py"],
    ["bench_report.py"],
    ["bench_ssim.py"],
    ["bench_embedding.py"],
    ["bench_faiss.py", "--sizes", "100000"],
    ["bench_reader.py"],
    ["bench_reading_browser.py"],
    ["bench_methods.py"],  # every method of the papers against random retrieval (a few minutes of training)
    # Imports and embeddings with 1, 2 and 4 workers; set BENCH_DATABASE_URL to a PostgreSQL database.
    ["bench_scale.py"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="FAISS at 100k and 1M vectors")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md unchanged")
    args = parser.parse_args()
    plan = [
        c if c[0] != "bench_faiss.py" or not args.full else ["bench_faiss.py", "--sizes", "100000", "1000000"]
        for c in QUICK
    ]
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true")}
    failed = []
    for command in plan:
        print(f"\n===== {' '.join(command)}", flush=True)
        extra = ["--no-record"] if args.no_record else []
        if subprocess.run([sys.executable, str(HERE / command[0]), *command[1:], *extra], env=env).returncode != 0:
            failed.append(command[0])
    if not args.no_record:
        print("results: docs/benchmarks.md (see git diff)")
    print("\nall benchmarks ran" if not failed else f"\ngoals missed or errors in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
