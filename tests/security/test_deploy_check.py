"""Issue 12, Done-when: `manage.py check --deploy` is clean with the production settings the docs give.

The environment is read from the `production-env` block of docs/configuration.md (the secret key's
placeholder replaced by a random one), so the docs and the check cannot drift apart."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

from tests.conftest import ROOT


def production_env() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    block = re.search(r"<!-- production-env -->\s*```bash\n(.*?)```\s*<!-- /production-env -->", text, re.S)
    assert block, "docs/configuration.md lost its production-env block"
    env = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        env[name.strip()] = value.strip()
    assert env["SECRET_KEY"].startswith("<")
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    # A production server's environment: not this test process's (the browser fixture sets
    # DJANGO_ALLOW_ASYNC_UNSAFE for Playwright, which `check --deploy` rightly refuses).
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEBUG", "SECRET_KEY", "SECURE_", "SESSION_", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    env = {**base, "DATA_DIR": str(tmp_path), **production_env()}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout + result.stderr


def test_security_settings_come_from_the_environment(tmp_path):
    code = (
        "import config.settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, "
        "s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_AGE, s.SESSION_SAVE_EVERY_REQUEST)"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    env = {**base, "DEBUG": "true", "DATA_DIR": str(tmp_path)}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert default.stdout.split() == ["False", "0", "None", "False", "3600", "True"]  # idle timeout: an hour
    env.update(
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="600",
        BEHIND_PROXY="true",
        SESSION_COOKIE_SECURE="true",
        SESSION_IDLE_MINUTES="20",
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "600", "('HTTP_X_FORWARDED_PROTO',", "'https')", "True", "1200", "True"]
