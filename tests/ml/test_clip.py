"""retrieval.ml.clip (paper 002): open_clip image encoders from local weights only, clear errors otherwise.

Real open_clip with a tiny model config registered by the tests (a 2-layer ViT at 32 px): its
weights are saved to a checkpoint file or laid out as a Hugging Face cache entry exactly as the hub
does, and the encoder built from them must compute what the original model's image tower computes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.ml.backbones import WeightsUnavailableError, create_backbone, data_config
from retrieval.ml.clip import BIOMEDCLIP, create_clip_image_encoder
from retrieval.ml.embed import embed_images

pytestmark = pytest.mark.ml

TINY = "cbir-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """Register the tiny config with open_clip (as a user would add their own model config)."""
    import open_clip

    path = tmp_path_factory.mktemp("clip-config") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture
def tiny_model(tiny):
    import open_clip

    torch.manual_seed(0)
    return open_clip.create_model(tiny, pretrained=None).eval()


def _hub_entry(cache: Path, repo: str, model, preprocess: dict | None = None, text_cfg: dict | None = None) -> None:
    """A Hugging Face cache entry of an open_clip model (refs/main → snapshot with config + safetensors)."""
    from safetensors.torch import save_file

    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0123abc")
    model_cfg = {**TINY_CONFIG, **({"text_cfg": text_cfg} if text_cfg else {})}
    (snapshot / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess or {"mean": [0.5] * 3, "std": [0.25] * 3}})
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, snapshot / "open_clip_model.safetensors")


@pytest.fixture
def no_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import open_clip` fails, as on an install without the ml extra."""
    monkeypatch.setitem(sys.modules, "open_clip", None)


def test_without_open_clip_the_error_says_how_to_get_it(no_open_clip, tmp_path: Path):
    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError, match="open_clip_torch"):
        create_clip_image_encoder("ViT-B-16", weights)


def test_a_missing_checkpoint_file_is_reported_before_importing_open_clip(no_open_clip, tmp_path: Path):
    with pytest.raises(WeightsUnavailableError, match="nor a cached"):
        create_clip_image_encoder("ViT-B-16", tmp_path / "nowhere.pt")


def test_an_uncached_hub_model_names_the_repo_and_the_cache(empty_caches: Path):
    with pytest.raises(WeightsUnavailableError) as info:
        create_clip_image_encoder(BIOMEDCLIP)
    message = str(info.value)
    assert "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in message
    assert str(empty_caches) in message and "never" in message


def test_a_local_checkpoint_gives_the_models_image_tower_and_preprocessing(tiny, tiny_model, tmp_path: Path):
    weights = tmp_path / "clip.pt"
    torch.save(tiny_model.state_dict(), weights)
    encoder = create_clip_image_encoder(tiny, weights)
    assert not hasattr(encoder, "transformer") and not encoder.training  # the text tower is dropped
    config = data_config(encoder)
    assert config["input_size"] == (3, 32, 32) and config["interpolation"] == "bicubic"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(tiny_model.encode_image(x), dim=1).numpy()
    out = embed_images(encoder, x)
    assert out.shape == (3, 16) and encoder.num_features == 16
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_a_cached_hub_model_is_built_offline_with_its_own_normalisation(tiny_model, empty_caches: Path):
    _hub_entry(empty_caches, "org/tiny-clip", tiny_model, preprocess={"mean": [0.4] * 3, "std": [0.2] * 3})
    encoder = create_backbone("open_clip:hf-hub:org/tiny-clip", weights="pretrained")
    assert data_config(encoder)["mean"] == (0.4, 0.4, 0.4) and data_config(encoder)["std"] == (0.2, 0.2, 0.2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), tiny_model.visual(x), atol=1e-5)


def test_a_hub_model_whose_text_tower_is_not_cached_is_weights_unavailable(tiny_model, empty_caches: Path):
    """BiomedCLIP's text tower is a Hugging Face text model: its config must be cached too."""
    text = {
        "context_length": 16,
        "hf_model_name": "org/uncached-text-model",
        "hf_tokenizer_name": "org/uncached-text-model",
        "hf_proj_type": "linear",
        "hf_pooler_type": "cls_last_hidden_state_pooler",
    }
    _hub_entry(empty_caches, "org/biomed-like", tiny_model, text_cfg=text)
    with pytest.raises(WeightsUnavailableError, match="local files"):
        create_clip_image_encoder("hf-hub:org/biomed-like")


def test_random_weights_only_when_asked_and_never_as_a_classifier(tiny):
    encoder = create_backbone(f"open_clip:{tiny}", weights="random")
    assert encoder.num_features == 16
    with pytest.raises(WeightsUnavailableError, match="no model config"):
        create_backbone("open_clip:no-such-clip-model", weights="random")
    with pytest.raises(ValueError, match="off-the-shelf"):
        create_backbone(f"open_clip:{tiny}", weights="random", num_classes=1)


def test_a_checkpoint_that_does_not_fit_the_model_is_weights_unavailable(tiny, tmp_path: Path):
    weights = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, weights)
    with pytest.raises(WeightsUnavailableError, match="local files"):
        create_clip_image_encoder(tiny, weights)
