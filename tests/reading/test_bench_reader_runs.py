"""benchmarks/bench_reader.py still reads a study end to end (not a timing: the numbers are not checked).

The benchmark finds the reader's image addresses in the case page; when the page changed (`?v=`, the
tiles' markup) it silently found none once. Run as users run it, in its browser mode behind nginx
(docker/nginx.conf.template, IMAGE_LINK_SECRET: images by signed links): every image of every case comes
back, the prefetch covers the next case, and every answer is stored once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import nginx

ROOT = Path(__file__).resolve().parents[2]


def test_bench_reader_reads_through_nginx_as_a_browser(tmp_path):
    assert nginx.nginx_binary(), "nginx is missing: run `make nginx` (apt-get install nginx-light)"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR", "DEBUG")}
    cmd = [sys.executable, "benchmarks/bench_reader.py", "--readers", "2", "--cases", "3", "--candidates", "6"]
    cmd += ["--workers", "1", "--threads", "4", "--browser", "--nginx", "--json", "--no-record"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(result.stdout[result.stdout.index("{") :])
    lat, integrity = out["latency"], out["integrity"]
    assert out["errors"] == [] and integrity == {
        "submitted": 6,
        "stored": 6,
        "lost": 0,
        "duplicates": 0,
        "wrong_items": 0,
    }
    assert lat["first_case"]["n"] == 2 and lat["next_case"]["n"] == 4
    assert lat["rendition"]["n"] == 2 * 7  # the first case's 7 images; later cases come from the prefetch
    assert lat["prefetch"]["n"] == 2 * 2 * 7  # cases 2 and 3, prefetched while reading cases 1 and 2
