"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest

from readerstudy.env import ConfigError, envbool, envint, envlist


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
    return subprocess.run([sys.executable, "-c", "import readerstudy.settings"], env={**base, **env},
                          capture_output=True, text=True)


def test_secret_key_required_when_debug_off(tmp_path):
    result = _load_settings(DEBUG="false", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_bad_debug_value_stops_start_up(tmp_path):
    result = _load_settings(DEBUG="yes please", DATA_DIR=str(tmp_path))
    assert "DEBUG must be true or false" in result.stderr


def test_bad_database_url_is_named(tmp_path):
    result = _load_settings(DEBUG="true", DATABASE_URL="nonsense://x", DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_production_settings_load_with_secret_key(tmp_path):
    result = _load_settings(DEBUG="false", SECRET_KEY="s" * 50, DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
