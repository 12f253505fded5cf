"""A CLIP-style encoder (paper 002) as an off-the-shelf run: embedded, indexed, evaluated like any backbone."""

import numpy as np
import pytest

from retrieval.runs import ranking
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create
from retrieval.runs.stages import run_execute
from tests.ml.test_clip import TINY, tiny  # noqa: F401 (the fixture registering the tiny open_clip config)

pytestmark = pytest.mark.ml


def test_open_clip_backbone_run(phantom_dataset, tiny):  # noqa: F811
    split = split_create(dataset=phantom_dataset, fractions=(0.6, 0.1, 0.3))
    run = run_create(
        dataset=phantom_dataset,
        name="clip",
        method="timm",
        split=split,
        enqueue=False,
        config={"backbone": f"open_clip:{tiny}", "weights": "random", "resize": 36, "crop": 32, "batch_size": 16},
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    ids, vectors = ranking.run_vectors(run=run)
    assert vectors.shape == (phantom_dataset.images.count(), 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert run.metrics["retrieval"]["n_queries"] >= 3 and "precision@1" in run.metrics["retrieval"]


def test_uncached_biomedclip_fails_the_run_with_the_fix(phantom_dataset, empty_hf_cache):
    run = run_create(
        dataset=phantom_dataset,
        name="biomedclip",
        method="timm",
        enqueue=False,
        config={"backbone": "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"},
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "BiomedCLIP" in run.error and "never downloads" in run.error and "Unexpected" not in run.error


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
