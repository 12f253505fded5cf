"""Fixtures of the reading tests: an open choose-k study read by `reader` and `other_reader`."""

from __future__ import annotations

import pytest

from readerstudy.models import Assignment
from tests.reading.factories import study_make


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Personas are made for almost every test here: hash their passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def study(reader, other_reader):
    """Open, choose 2 of 5, 3 cases, assigned to reader and other_reader."""
    return study_make(readers=[reader, other_reader])


@pytest.fixture
def assignment(study, reader) -> Assignment:
    return Assignment.objects.get(study=study, reader=reader)


@pytest.fixture
def other_assignment(study, other_reader) -> Assignment:
    return Assignment.objects.get(study=study, reader=other_reader)


@pytest.fixture
def case(study):
    return study.cases.order_by("position").first()
