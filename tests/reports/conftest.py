"""Fixtures of the report tests: a fast password hasher and a generator bound to the test's folder."""

from __future__ import annotations

import pytest

from tests.reports.factories import generate_study


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Six personas per permission test: a fast hasher keeps the matrix quick (logins still check passwords)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def generate(db, tmp_path):
    """generate_study with the model run's artefacts in this test's temporary folder."""

    def make(**kwargs):
        kwargs.setdefault("run_dir", tmp_path / "runs")
        return generate_study(**kwargs)

    return make
