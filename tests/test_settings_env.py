"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest

from core.env import ConfigError, envbool, envint, envlist


def test_envbool_accepts_true_false(monkeypatch):
    monkeypatch.setenv("X_FLAG", "true")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert envbool("X_FLAG", True) is False


def test_envbool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ConfigError, match="X_FLAG must be true or false"):
        envbool("X_FLAG", False)


def test_envint_refuses_text_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ConfigError, match="X_INT must be an integer"):
        envint("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        envint("X_INT", 5, minimum=1)


def test_envlist_splits_commas(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert envlist("X_LIST", []) == ["a.example", "b.example"]


def _load_settings(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"], env={**base, **env}, capture_output=True, text=True
    )


def test_secret_key_required_when_debug_off(tmp_path):
    result = _load_settings(DEBUG="false", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off" in result.stderr


def test_bad_debug_value_stops_start_up(tmp_path):
    result = _load_settings(DEBUG="yes please", DATA_DIR=str(tmp_path))
    assert "DEBUG must be true or false" in result.stderr


def test_bad_database_url_is_named(tmp_path):
    result = _load_settings(DEBUG="true", DATABASE_URL="nonsense://x", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_database_url_without_a_database_name_is_refused(tmp_path):
    for url in ("postgres://", "postgres://cbir@127.0.0.1:5432/"):
        result = _load_settings(DEBUG="true", DATABASE_URL=url, DATA_DIR=str(tmp_path))
        assert result.returncode != 0, url
        assert "DATABASE_URL names no database" in result.stderr, result.stderr


def test_database_url_with_a_name_loads(tmp_path):
    result = _load_settings(DEBUG="true", DATABASE_URL="postgres://cbir@127.0.0.1:5432/cbir", DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("url", ["nonsense", "http://127.0.0.1:6379/0", "redis:/127.0.0.1", "filesystem://;bogus"])
def test_bad_broker_url_is_named(tmp_path, url):
    result = _load_settings(DEBUG="true", CELERY_BROKER_URL=url, DATA_DIR=str(tmp_path))
    assert result.returncode != 0, url
    assert "CELERY_BROKER_URL must be a URL starting with one of filesystem://, redis://" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["filesystem://", "redis://127.0.0.1:6379/15", "rediss://cache:6380/0", "amqp://guest@localhost//", "memory://"],
)
def test_broker_urls_the_platform_uses_load(tmp_path, url):
    code = "from django.conf import settings; import config.settings as s; print(s.CELERY_BROKER_URL)"
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**base, "DEBUG": "true", "CELERY_BROKER_URL": url, "DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    # the embedded broker is named with its host, or kombu warns "No hostname was supplied" on every connection
    assert result.stdout.strip() == ("filesystem://localhost/" if url == "filesystem://" else url)


def test_production_settings_load_with_secret_key(tmp_path):
    result = _load_settings(DEBUG="false", SECRET_KEY="s" * 50, DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_secret_key_from_a_file(tmp_path):
    key = tmp_path / "secret_key"
    key.write_text("k" * 50 + "\n")
    code = "import config.settings as s; print(s.SECRET_KEY, s.DEBUG)"
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**base, "SECRET_KEY_FILE": str(key), "DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["k" * 50, "False"]


@pytest.mark.parametrize("content", [None, ""])
def test_unreadable_or_empty_secret_key_file_is_named(tmp_path, content):
    key = tmp_path / "secret_key"
    if content is not None:
        key.write_text(content)
    result = _load_settings(DEBUG="false", SECRET_KEY_FILE=str(key), DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert f"SECRET_KEY_FILE {str(key)!r}" in result.stderr
