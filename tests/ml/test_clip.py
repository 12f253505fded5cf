"""retrieval.ml.clip (paper 002): open_clip image encoders from local weights only, clear errors otherwise.

open_clip is not installed here; the success path runs against a stand-in `open_clip` module so the
wrapper's own logic (weights lookup, image tower, preprocessing config) is tested without it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retrieval.ml.backbones import WeightsUnavailableError, data_config
from retrieval.ml.clip import BIOMEDCLIP, create_clip_image_encoder
from retrieval.ml.embed import embed_images

pytestmark = pytest.mark.ml


@pytest.fixture
def no_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import open_clip` fails, whether or not the package is installed."""
    monkeypatch.setitem(sys.modules, "open_clip", None)


class FakeVisual(nn.Module):
    """A tiny image tower with open_clip's attributes."""

    image_size = 32
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.25, 0.25, 0.25)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.output_dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def fake_open_clip(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """A stand-in open_clip whose create_model_and_transforms records its calls."""
    calls: list[tuple[str, dict]] = []
    module = types.ModuleType("open_clip")

    def create_model_and_transforms(name: str, **kwargs):
        calls.append((name, kwargs))
        if name == "missing-text-tower":
            raise FileNotFoundError("config.json of the text model is not cached")
        model = nn.Module()
        model.visual = FakeVisual()
        model.text = nn.Linear(2, 2)
        return model, None, None

    module.create_model_and_transforms = create_model_and_transforms  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "open_clip", module)
    return calls


def test_without_open_clip_the_error_says_how_to_get_it(no_open_clip, tmp_path: Path):
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError, match="open_clip_torch"):
        create_clip_image_encoder("ViT-B-16", weights)


def test_a_missing_checkpoint_file_is_reported_before_importing_open_clip(no_open_clip, tmp_path: Path):
    with pytest.raises(WeightsUnavailableError, match="nor a cached"):
        create_clip_image_encoder("ViT-B-16", tmp_path / "nowhere.pt")


def test_an_uncached_hub_model_names_the_repo_and_the_cache(no_open_clip, empty_caches: Path):
    with pytest.raises(WeightsUnavailableError) as info:
        create_clip_image_encoder(BIOMEDCLIP)
    message = str(info.value)
    assert "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in message
    assert str(empty_caches) in message and "never" in message


def test_a_local_checkpoint_gives_an_image_encoder_with_its_preprocessing(fake_open_clip, tmp_path: Path):
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"x")
    encoder = create_clip_image_encoder("ViT-B-16", weights)
    assert fake_open_clip == [("ViT-B-16", {"pretrained": str(weights)})]
    assert not hasattr(encoder, "text") and not encoder.training
    config = data_config(encoder)
    assert config["input_size"] == (3, 32, 32) and config["mean"] == (0.5, 0.5, 0.5)
    out = embed_images(encoder, torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_a_cached_hub_model_is_built_by_its_hub_id(fake_open_clip, empty_caches: Path):
    repo = empty_caches / "models--org--clip" / "snapshots" / "abc"
    repo.mkdir(parents=True)
    (repo.parent.parent / "refs").mkdir()
    (repo.parent.parent / "refs" / "main").write_text("abc")
    (repo / "open_clip_config.json").write_text("{}")
    (repo / "open_clip_pytorch_model.bin").write_bytes(b"x")
    encoder = create_clip_image_encoder("hf-hub:org/clip")
    assert fake_open_clip == [("hf-hub:org/clip", {})]
    assert encoder.num_features == 4


def test_files_open_clip_cannot_find_become_weights_unavailable(fake_open_clip, tmp_path: Path):
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError, match="local files"):
        create_clip_image_encoder("missing-text-tower", weights)
