"""Run every benchmark once, in sequence (`make bench`); each prints its own ratio to a baseline.

Quick by default (FAISS at 100k vectors); `--full` adds the 1M-vector FAISS run (about 10 minutes
of index building on two cores). Results are recorded by hand in README.md → Benchmarks.
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
    ["bench_report.py"],
    ["bench_ssim.py"],
    ["bench_embedding.py"],
    ["bench_faiss.py", "--sizes", "100000"],
    ["bench_reader.py"],
    ["bench_methods.py"],  # every method of the papers against random retrieval (a few minutes of training)
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="FAISS at 100k and 1M vectors")
    args = parser.parse_args()
    plan = [c if c[0] != "bench_faiss.py" or not args.full else ["bench_faiss.py", "--sizes", "100000", "1000000"]
            for c in QUICK]
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "true")}
    failed = []
    for command in plan:
        print(f"\n===== {' '.join(command)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], env=env).returncode != 0:
            failed.append(command[0])
    print("\nall benchmarks ran" if not failed else f"\ngoals missed or errors in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
