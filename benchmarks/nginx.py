"""docker/nginx.conf.template run by a local nginx (outside a container): for tests and benchmarks.

The server block is the deployed one, rendered as the official nginx image renders it (envsubst of the
CBIR_* variables only); this module adds only the main file the image would have around it (http {} with
mime types, a pid file, temporary folders under a scratch folder). Standard library only.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docker" / "nginx.conf.template"
VARIABLES = ("CBIR_LISTEN", "CBIR_UPSTREAM", "CBIR_STATIC_ROOT", "CBIR_IMAGE_LINK_ROOT", "CBIR_IMAGE_LINK_SECRET")


def nginx_binary() -> str | None:
    """nginx on PATH or in /usr/sbin (Debian's nginx-light), else None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render(values: dict[str, str]) -> str:
    """The template with ${CBIR_*} replaced (as `envsubst` with NGINX_ENVSUBST_FILTER=^CBIR_ does)."""
    missing = set(VARIABLES) - set(values)
    if missing:
        raise ValueError(f"nginx template needs {sorted(missing)}")
    return re.sub(r"\$\{(CBIR_[A-Z_]+)\}", lambda m: values[m[1]], TEMPLATE.read_text())


MAIN = """\
{user}worker_processes {workers};
pid {scratch}/nginx.pid;
error_log {scratch}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 10000;
    client_body_temp_path {scratch}/body;
    proxy_temp_path {scratch}/proxy;
    fastcgi_temp_path {scratch}/fastcgi;
    uwsgi_temp_path {scratch}/uwsgi;
    scgi_temp_path {scratch}/scgi;
    include {scratch}/server.conf;
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    scratch: Path, *, upstream: str, static_root: Path, link_root: Path, link_secret: str, workers: int = 1
) -> tuple[subprocess.Popen, int]:
    """nginx in the foreground on a free loopback port; returns (process, port) once it accepts connections.

    `link_root` and `link_secret`: the web service's IMAGE_LINK_ROOT and IMAGE_LINK_SECRET."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    values = {
        "CBIR_LISTEN": f"127.0.0.1:{port}",
        "CBIR_UPSTREAM": upstream,
        "CBIR_STATIC_ROOT": str(Path(static_root).resolve()),
        "CBIR_IMAGE_LINK_ROOT": str(Path(link_root).resolve()),
        "CBIR_IMAGE_LINK_SECRET": link_secret,
    }
    (scratch / "server.conf").write_text(render(values))
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise drop to nobody
    (scratch / "nginx.conf").write_text(MAIN.format(user=user, workers=workers, scratch=scratch))
    proc = subprocess.Popen(
        [binary, "-p", str(scratch), "-c", str(scratch / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("nginx did not accept connections within 15 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
