"""The container's health check: GET /healthz/ on this machine, under a host name the site accepts.

    python -m core.healthcheck        (docker/Dockerfile's HEALTHCHECK; exit status 0 when healthy)

Django refuses a request whose Host is not in ALLOWED_HOSTS, and a production deployment allows only
its own name (e.g. `cbir.example.org`), so a plain request to 127.0.0.1 would be answered 400 and the
container marked unhealthy. The check therefore sends the first host of ALLOWED_HOSTS that names one
host (a leading-dot domain gives its bare name; `*` means any, so 127.0.0.1 is used). Standard library
only: it must not load Django or the app (it runs every 30 s inside the web container).
"""

from __future__ import annotations

import http.client
import os
import sys


def health_host(allowed_hosts: str | None) -> str:
    """The Host header to send: the first usable name of ALLOWED_HOSTS (as config.settings reads it)."""
    for item in (allowed_hosts or "").split(","):
        name = item.strip()
        if not name or name == "*":
            continue
        name = name.lstrip(".")  # ".example.org" allows example.org and its subdomains
        if name:
            return name
    return "127.0.0.1"


def check(port: int, *, host_header: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether /healthz/ answers 200, with a line saying what it answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz/", headers={"Host": host_header})
        response = connection.getresponse()
        response.read()
        return response.status == 200, f"/healthz/ answered {response.status} to Host: {host_header}"
    except OSError as exc:
        return False, f"/healthz/ did not answer on port {port}: {exc}"
    finally:
        connection.close()


def main() -> int:
    healthy, line = check(int(os.environ.get("PORT") or 8000), host_header=health_host(os.environ.get("ALLOWED_HOSTS")))
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
