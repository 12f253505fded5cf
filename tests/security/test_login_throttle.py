"""Issue 12, finding 11: brute force on the login form and on HTTP Basic auth is throttled.

After LOGIN_FAILURE_LIMIT wrong passwords the right one is refused (429, a clear message) for
LOGIN_COOLOFF_MINUTES; per account and per address; failures are logged."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys

import pytest
from django.test import Client

from core.security import client_ip


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def _login(client, username, password, ip="10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, follow=False)


def _basic(client, username, password, ip="10.0.0.1"):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return client.get("/api/studies/", HTTP_AUTHORIZATION=f"Basic {token}", REMOTE_ADDR=ip)


def test_login_form_locks_the_account_after_failures(coordinator, limit, caplog):
    client = Client()
    assert _login(client, "coordinator", "pw-coordinator").status_code == 302  # the right password works
    client = Client()
    with caplog.at_level(logging.WARNING, logger="axes"):
        for _ in range(limit):
            assert _login(client, "coordinator", "wrong").status_code in (200, 429)
    assert any("coordinator" in r.getMessage() for r in caplog.records), "failures are logged with the user name"
    locked = _login(client, "coordinator", "pw-coordinator")
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Too many failed logins" in text and "Try again in 15 minutes" in text
    assert "_auth_user_id" not in client.session
    # per account: from another address too
    assert _login(Client(), "coordinator", "pw-coordinator", ip="10.9.9.9").status_code == 429


def test_login_form_locks_the_address(coordinator, researcher, limit):
    client = Client()
    for n in range(limit):
        _login(client, f"nobody{n}", "wrong", ip="10.0.0.7")
    assert _login(client, "researcher", "pw-researcher", ip="10.0.0.7").status_code == 429
    assert _login(Client(), "researcher", "pw-researcher", ip="10.0.0.8").status_code == 302


def test_basic_auth_locks_the_account(coordinator, limit):
    client = Client()
    assert _basic(client, "coordinator", "pw-coordinator").status_code == 200
    for _ in range(limit):
        assert _basic(client, "coordinator", "wrong").status_code in (401, 403, 429)
    locked = _basic(client, "coordinator", "pw-coordinator")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.json()["detail"]


def test_cooloff_is_configurable_from_the_environment(tmp_path):
    code = "import config.settings as s; print(s.AXES_COOLOFF_TIME.total_seconds(), s.AXES_FAILURE_LIMIT)"
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    env.update(DEBUG="true", DATA_DIR=str(tmp_path), LOGIN_COOLOFF_MINUTES="7", LOGIN_FAILURE_LIMIT="9")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["420.0", "9"]


def test_client_address_behind_a_proxy(rf, settings):
    request = rf.get("/", REMOTE_ADDR="172.17.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    assert client_ip(request) == "172.17.0.1"
    settings.BEHIND_PROXY = True
    assert client_ip(request) == "203.0.113.5"  # the entry the proxy appended; the first one is the client's claim
