"""Backbones: timm models with weights from the local Hugging Face cache, a local checkpoint, or random init.

Weights never come from the network here: the platform's workers may have no route out, and a
download that hangs inside a Celery task is worse than a clear error. ``weights="pretrained"``
looks in the Hugging Face hub cache (and timm's torch-hub cache for the few models without a hub
copy) and raises :class:`WeightsUnavailableError` when the file is not there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import safetensors.torch
import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from .clip import create_clip_image_encoder
from .weights import HF_WEIGHT_FILES, WeightsUnavailableError, cached_hf_file, hf_cache_dir, missing_message

logger = logging.getLogger(__name__)

PRETRAINED = "pretrained"
RANDOM = "random"
OPEN_CLIP_PREFIX = "open_clip:"  # create_backbone("open_clip:hf-hub:microsoft/BiomedCLIP-…") → retrieval.ml.clip
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "model_state")


def create_backbone(
    name: str, *, weights: str | os.PathLike[str] = PRETRAINED, num_classes: int = 0, **kwargs: Any
) -> nn.Module:
    """A timm model with weights "pretrained" (local cache only), "random", or from a local checkpoint file.

    ``open_clip:MODEL`` names a CLIP-style image encoder instead (paper 002, retrieval.ml.clip): off the
    shelf only (num_classes 0); weights "pretrained" with MODEL an ``hf-hub:org/repo`` id in the local
    cache (e.g. BiomedCLIP), a local checkpoint file, or "random".
    """
    if name.startswith(OPEN_CLIP_PREFIX):
        return _create_open_clip(name.removeprefix(OPEN_CLIP_PREFIX), weights=weights, num_classes=num_classes)
    if weights == RANDOM:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if weights == PRETRAINED:
        return _create_pretrained(name, num_classes=num_classes, **kwargs)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights={str(weights)!r} for model {name!r} is neither 'pretrained', 'random' "
            f"nor an existing checkpoint file."
        )
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    load_weights(model, path)
    return model


def _create_open_clip(name: str, *, weights: str | os.PathLike[str], num_classes: int) -> nn.Module:
    if num_classes:
        raise ValueError(
            f"{OPEN_CLIP_PREFIX}{name} is an off-the-shelf image encoder: it cannot be fine-tuned as a "
            "classifier here (use it with the off-the-shelf method, or a timm backbone for training)."
        )
    if weights == PRETRAINED:
        return create_clip_image_encoder(name)
    return create_clip_image_encoder(name, weights=weights)


def _create_pretrained(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build `name` with pretrained weights found in the local caches."""
    if name.startswith("hf-hub:"):
        snapshot = _cached_hf_snapshot(name.removeprefix("hf-hub:"))
        return timm.create_model(f"local-dir:{snapshot}", pretrained=True, num_classes=num_classes, **kwargs)
    path = cached_pretrained_file(name)
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=num_classes, **kwargs
    )


def cached_pretrained_file(name: str) -> Path:
    """Path of the cached pretrained weight file of timm model `name`, or WeightsUnavailableError."""
    if not timm.is_model(name):
        raise ValueError(f"timm has no model called {name!r}.")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # unknown pretrained tag
        raise WeightsUnavailableError(f"timm knows no pretrained weights called {name!r}: {exc}") from exc
    if cfg is None:
        raise WeightsUnavailableError(f"timm knows no pretrained weights for model {name!r}.")
    looked: list[str] = []
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        found = cached_hf_file(repo_id, files, revision=revision or None)
        if found:
            return found
        looked.append(f"Hugging Face cache {hf_cache_dir()} (repo {repo_id}, files {', '.join(files)})")
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if candidate.is_file():
            return candidate
        looked.append(f"torch hub cache {candidate}")
    raise WeightsUnavailableError(missing_message(name, cfg.hf_hub_id, looked))


def _cached_hf_snapshot(repo_id: str) -> Path:
    """Local snapshot folder of an "hf-hub:" timm repo (config.json + weights), or WeightsUnavailableError."""
    repo, _, revision = repo_id.partition("@")
    config = cached_hf_file(repo, ("config.json",), revision=revision or None)
    weights = cached_hf_file(repo, HF_WEIGHT_FILES, revision=revision or None)
    if config is None or weights is None:
        looked = [f"Hugging Face cache {hf_cache_dir()} (repo {repo}, config.json + {' or '.join(HF_WEIGHT_FILES)})"]
        raise WeightsUnavailableError(missing_message(f"hf-hub:{repo_id}", repo, looked))
    return config.parent


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors/.pth/.pt/.bin file; unwraps training checkpoints ({"model": state_dict, ...})."""
    path = Path(path)
    if path.suffix == ".safetensors":
        obj: Any = safetensors.torch.load_file(str(path), device="cpu")
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in STATE_DICT_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds no state dict (got {type(obj).__name__}).")
    state = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path} holds no tensors.")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local checkpoint into `model`; only classifier-head keys may be missing, extra or reshaped."""
    state = load_state_dict_file(path)
    own = model.state_dict()
    heads = _classifier_prefixes(model)
    for key in [k for k, v in state.items() if k in own and own[k].shape != v.shape and _is_head(k, heads)]:
        state.pop(key)  # a head trained for another number of classes: keep the fresh one
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _is_head(k, heads)]
    unexpected = [k for k in result.unexpected_keys if not _is_head(k, heads)]
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {path} does not fit {type(model).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}."
        )


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the model's state dict atomically as .safetensors (by suffix) or a torch pickle."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(tmp))
    else:
        torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Module names of the classifier head(s), from the timm pretrained config."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ("head", "fc", "classifier")
    return (names,) if isinstance(names, str) else tuple(names)


def _is_head(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a state-dict key belongs to a classifier head."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def embedding_dim(model: nn.Module) -> int:
    """Width of the pooled pre-logit features (what `forward_head(x, pre_logits=True)` returns)."""
    width = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not width:
        raise ValueError(f"{type(model).__name__} exposes neither head_hidden_size nor num_features.")
    return int(width)


def data_config(model: nn.Module, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """timm's input config (input_size, mean, std, interpolation, crop_pct) for `model`, with overrides."""
    return dict(resolve_data_config(args=dict(overrides or {}), model=model))
