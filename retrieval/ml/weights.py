"""Where pretrained weights are looked for: the local Hugging Face cache only, never the network.

The platform's workers may have no route out, and a download that hangs inside a Celery task is worse
than a clear error: a missing file raises WeightsUnavailableError saying what was looked for, where,
and how to fix it (used by retrieval.ml.backbones for timm models and retrieval.ml.clip for open_clip).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache  # HF_HUB_OFFLINE is set by retrieval.ml (package init)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but are not on this machine."""


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache directory, resolved from the environment at call time."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def cached_hf_file(repo_id: str, filenames: tuple[str, ...], *, revision: str | None = None) -> Path | None:
    """First of `filenames` present in the local Hugging Face cache for `repo_id` (no network)."""
    for filename in filenames:
        hit = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir(), revision=revision)
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def missing_message(name: str, hf_hub_id: str | None, looked: list[str]) -> str:
    """The error text for weights that are not cached: what, where we looked, how to fix."""
    where = "; ".join(looked) or "nowhere (timm lists no download location)"
    fetch = (
        f"`hf download {hf_hub_id.partition('@')[0]}` (older huggingface_hub: `huggingface-cli download ...`) "
        f"and copy its HF_HOME/hub folder to {hf_cache_dir()}"
        if hf_hub_id
        else "timm.create_model(..., pretrained=True) and copy the torch hub cache here"
    )
    return (
        f"Pretrained weights for model {name!r} are not in the local cache (looked in: {where}). "
        f"This process never downloads weights. To fix: on a machine with network run {fetch}; "
        f"or pass a local checkpoint path (.pth/.safetensors) as the weights; "
        f"or ask for random initialisation explicitly (weights='random', --weights random)."
    )
