"""Fine-tuning needs a split. What a fine-tuning run records (history, checkpoints, timings, Grad-CAM overlays,
progress), its retrieval against random on the test split and its binary targets are checked on the run that
tests/runs/test_methods_learn.py trains once for its module (with every other method of the papers)."""

import pytest

from retrieval.models import ModelRun
from retrieval.runs.services import run_create
from tests.runs.conftest import make_phantom_dataset

pytestmark = pytest.mark.ml


def test_training_needs_a_split(db, tmp_path):
    from core.errors import ApplicationError

    dataset = make_phantom_dataset(tmp_path / "q", n=10, name="nosplit")
    with pytest.raises(ApplicationError, match="needs a split"):
        run_create(dataset=dataset, name="x", method="finetune", config={"positive": ["Cardiomegaly"]}, enqueue=False)
    assert not ModelRun.objects.exists()
