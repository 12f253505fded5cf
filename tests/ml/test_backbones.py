"""retrieval.ml.backbones: random init, cache-only pretrained weights, local checkpoints, embedding width."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retrieval.ml.backbones import (
    WeightsUnavailableError,
    create_backbone,
    data_config,
    embedding_dim,
    load_weights,
    save_weights,
)
from retrieval.ml.embed import pooled_features

pytestmark = pytest.mark.ml


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "name, kwargs",
    [("test_resnet", {}), ("resnet18", {}), ("vit_tiny_patch16_224", {"img_size": 64}), ("densenet121", {})],
)
def test_random_backbone_embedding_dim_matches_pre_logits(name, kwargs):
    model = create_backbone(name, weights="random", num_classes=3, **kwargs).eval()
    with torch.inference_mode():
        features = pooled_features(model, torch.randn(2, 3, 64, 64))
    assert features.shape == (2, embedding_dim(model))


def test_pretrained_with_empty_cache_raises_clear_error(empty_caches: Path):
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("resnet18", weights="pretrained")
    message = str(info.value)
    assert "resnet18" in message
    assert str(empty_caches) in message
    assert "huggingface-cli" in message and "random" in message and "checkpoint" in message


def test_hf_hub_name_with_empty_cache_raises(empty_caches: Path):
    with pytest.raises(WeightsUnavailableError, match="timm/some_model"):
        create_backbone("hf-hub:timm/some_model", weights="pretrained")


def test_pretrained_loads_from_populated_cache(empty_caches: Path):
    source = create_backbone("test_resnet", weights="random", num_classes=1000)
    snapshot = empty_caches / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    save_weights(source, snapshot / "model.safetensors")
    loaded = create_backbone("test_resnet", weights="pretrained", num_classes=1000)
    assert same_weights(source, loaded)
    headless = create_backbone("test_resnet", weights="pretrained")  # num_classes=0 drops the head
    assert torch.equal(headless.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_checkpoint_round_trip(tmp_path: Path, suffix: str):
    source = create_backbone("test_vit", weights="random", num_classes=0)
    path = save_weights(source, tmp_path / f"weights{suffix}")
    assert same_weights(source, create_backbone("test_vit", weights=str(path)))


def test_training_checkpoint_wrapper_and_head_handling(tmp_path: Path):
    trained = create_backbone("test_resnet", weights="random", num_classes=1)
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"model": state, "optimizer": {}, "epoch": 3, "best_metric": 0.9}, tmp_path / "last.pt")
    embedder = create_backbone("test_resnet", weights=tmp_path / "last.pt", num_classes=0)
    assert torch.equal(embedder.state_dict()["conv1.0.weight"], trained.state_dict()["conv1.0.weight"])
    same_head = create_backbone("test_resnet", weights=tmp_path / "last.pt", num_classes=1)
    assert same_weights(trained, same_head)
    new_head = create_backbone("test_resnet", weights=tmp_path / "last.pt", num_classes=4)
    assert new_head.fc.weight.shape == (4, embedding_dim(new_head))


def test_checkpoint_of_another_architecture_rejected(tmp_path: Path):
    path = save_weights(create_backbone("test_vit", weights="random"), tmp_path / "vit.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(create_backbone("test_resnet", weights="random"), path)


def test_missing_checkpoint_path_and_unknown_model(tmp_path: Path, empty_caches: Path):
    with pytest.raises(WeightsUnavailableError, match="neither"):
        create_backbone("test_resnet", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="no model"):
        create_backbone("not_a_model_xyz", weights="pretrained")


def test_data_config_defaults_and_overrides():
    model = create_backbone("resnet18", weights="random")
    config = data_config(model)
    assert config["input_size"] == (3, 224, 224) and len(config["mean"]) == 3
    small = data_config(model, {"input_size": (3, 64, 64), "mean": (0.5,), "std": (0.25,)})
    assert small["input_size"] == (3, 64, 64) and small["mean"] == (0.5, 0.5, 0.5)
