"""Fixtures of the study tests: a labelled dataset, a model run with embeddings, a built study."""

from __future__ import annotations

import numpy as np
import pytest

from readerstudy import building, services
from readerstudy.models import AnswerMode
from retrieval.models import Dataset
from tests.studies.factories import make_images, make_run

CLASSES = ["effusion"] * 12 + ["normal"] * 20 + ["nodule"] * 8


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Six personas per test: a fast hasher keeps the permission matrix quick (logins still check passwords)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dataset(db):
    return Dataset.objects.create(name="Chest")


@pytest.fixture
def images(dataset):
    return make_images(dataset, CLASSES)


@pytest.fixture
def vectors(images):
    return np.random.default_rng(7).normal(size=(len(images), 16)).astype(np.float32)


@pytest.fixture
def run(dataset, images, vectors, tmp_path):
    return make_run(dataset, tmp_path / "run-vit", [i.pk for i in images], vectors)


@pytest.fixture
def study(dataset, images, coordinator):
    study = services.study_create(
        name="Effusion 5 of 10", dataset=dataset, mode=AnswerMode.CHOOSE_K, k=5, seed=42, created_by=coordinator
    )
    return building.study_build_cases(
        study=study,
        builder=building.STRATIFIED_RANDOM,
        config={"n_queries": 4, "n": 10, "class_label": "finding"},
        seed=42,
    )


@pytest.fixture
def assigned(study, reader, other_reader):
    services.assignment_add(study=study, reader=reader)
    services.assignment_add(study=study, reader=other_reader)
    return study
