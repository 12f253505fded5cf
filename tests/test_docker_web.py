"""docker/entrypoint.sh's `web` role (without docker) and the image's health check against it.

The entrypoint runs as the container runs it (`cbir-entrypoint web`: migrate, collectstatic, gunicorn),
with the checkout's virtual environment first on PATH in place of the image's Python, DEBUG off and a
production ALLOWED_HOSTS naming only the site's public name. The Dockerfile's HEALTHCHECK command
(`python -m core.healthcheck`) must find the server healthy although it calls 127.0.0.1 — a plain request
to 127.0.0.1 is refused by Django's host check, which once marked every production container unhealthy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.healthcheck import check, health_host
from tests.conftest import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_health_host_takes_the_first_usable_allowed_host():
    assert health_host("cbir.example.org,localhost") == "cbir.example.org"
    assert health_host(" , *, .example.org") == "example.org"
    assert health_host("*") == "127.0.0.1"
    assert health_host(None) == "127.0.0.1"
    assert health_host("") == "127.0.0.1"


def test_the_dockerfile_health_check_is_this_module():
    healthcheck = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("HEALTHCHECK")]
    assert healthcheck and "python -m core.healthcheck" in healthcheck[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_check_passes_on_the_web_role_with_a_production_host(tmp_path):
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "MEDIA_ROOT", "ARTEFACT_ROOT", "STATIC_ROOT", "DEBUG"}
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # the image's python/gunicorn
        DEBUG="false",
        SECRET_KEY="s" * 50,
        DATA_DIR=str(tmp_path / "data"),  # SQLite in the data folder: the embedded default
        ALLOWED_HOSTS="cbir.example.org",
        PORT=str(port),
        WEB_WORKERS="1",
    )
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        ["sh", "docker/entrypoint.sh", "web"], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        healthy, line = False, ""
        while time.monotonic() < deadline and proc.poll() is None:
            result = subprocess.run(
                [sys.executable, "-m", "core.healthcheck"], cwd=ROOT, env=env, capture_output=True, text=True
            )
            healthy, line = result.returncode == 0, result.stdout.strip()
            if healthy:
                break
            time.sleep(0.5)
        assert healthy, f"health check never passed ({line}); web log:\n{log.read_text()[-3000:]}"
        assert line == "/healthz/ answered 200 to Host: cbir.example.org"
        # What the old check sent: refused by the host check, so the container would be reported unhealthy.
        refused, why = check(port, host_header="127.0.0.1")
        assert not refused and "answered 400" in why
    finally:
        proc.terminate()
        proc.wait(timeout=30)
