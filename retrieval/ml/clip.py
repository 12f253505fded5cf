"""CLIP-style image encoders (paper 002: CLIP, BiomedCLIP) through open_clip, from local weights only.

Paper 002 found BiomedCLIP's image embeddings the best off-the-shelf features for radiology
retrieval (P@1 0.594 micro). open_clip (``open_clip_torch``, part of the ``ml`` extra) is imported
only when an encoder is asked for; weights come from a local checkpoint file or the local Hugging
Face cache, never from the network (backbones sets HF_HUB_OFFLINE=1), or are random when asked for
explicitly (tests). Anything missing — the package, the weights, the config, BiomedCLIP's
text-tower config — raises weights.WeightsUnavailableError with what was looked for and how to
fix it. Runs reach this through ``backbones.create_backbone("open_clip:NAME", weights=…)``.

The returned `ClipImageEncoder` is the image tower only (the text tower is dropped), with the
attributes the rest of retrieval.ml expects: ``forward(x) → (n, d)`` un-normalised image features
(`embed.embed_images` L2-normalises them), ``num_features`` and a ``pretrained_cfg`` holding the
model's own preprocessing (size, mean, std, bicubic, no crop) for `backbones.data_config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .weights import WeightsUnavailableError, cached_hf_file, hf_cache_dir

HF_PREFIX = "hf-hub:"
BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(nn.Module):
    """An open_clip model's image tower: forward(x) = visual(x), (n, d) features before L2 normalisation."""

    def __init__(self, clip_model: nn.Module, name: str) -> None:
        super().__init__()
        self.visual = clip_model.visual
        size = getattr(self.visual, "image_size", 224)
        size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.pretrained_cfg = {
            "architecture": name,
            "input_size": (3, *size),
            "mean": tuple(getattr(self.visual, "image_mean", None) or OPENAI_MEAN),
            "std": tuple(getattr(self.visual, "image_std", None) or OPENAI_STD),
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "classifier": None,
        }
        self.num_features = self.head_hidden_size = _output_dim(self.visual, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _output_dim(visual: nn.Module, size: tuple[int, int]) -> int:
    """Width of the image features: `output_dim` when the tower has one, else one dummy forward."""
    width = getattr(visual, "output_dim", None)
    if width:
        return int(width)
    was_training = visual.training
    visual.eval()
    try:
        with torch.no_grad():
            return int(visual(torch.zeros(1, 3, *size)).shape[-1])
    finally:
        visual.train(was_training)


def _import_open_clip() -> ModuleType:
    """The open_clip package, or WeightsUnavailableError saying how to get it."""
    try:
        import open_clip
    except ImportError as exc:
        raise WeightsUnavailableError(
            "CLIP-style encoders (CLIP, BiomedCLIP; paper 002) need the optional package open_clip, which is "
            "not installed. To fix: `pip install open_clip_torch` in this environment, put the weights in the "
            "local Hugging Face cache or a local file, or use a timm backbone instead."
        ) from exc
    return open_clip


def _hub_files(repo_id: str) -> None:
    """Check that the open_clip config and weights of a hub repo are in the local cache."""
    config = cached_hf_file(repo_id, (OPEN_CLIP_CONFIG,))
    weights = cached_hf_file(repo_id, OPEN_CLIP_WEIGHTS)
    if config is None or weights is None:
        raise WeightsUnavailableError(
            f"open_clip model {HF_PREFIX}{repo_id} is not in the local Hugging Face cache {hf_cache_dir()} "
            f"(needs {OPEN_CLIP_CONFIG} and one of {', '.join(OPEN_CLIP_WEIGHTS)}). This process never "
            f"downloads weights. To fix: on a machine with network run `hf download {repo_id}` (BiomedCLIP also "
            f"needs its text model's config) and copy the HF_HOME/hub folder here, or pass a local checkpoint file."
        )


def create_clip_image_encoder(name: str, weights: str | os.PathLike[str] | None = None) -> ClipImageEncoder:
    """Image encoder of open_clip model `name` with weights from a local file, a cached "hf-hub:org/repo",
    or "random" (random initialisation, only when asked for)."""
    if str(weights) == "random" and not name.startswith(HF_PREFIX):
        open_clip = _import_open_clip()
        try:
            model = open_clip.create_model(name, pretrained=None)
        except RuntimeError as exc:  # open_clip: "Model config for … not found"
            raise WeightsUnavailableError(f"open_clip has no model config called {name!r}: {exc}") from exc
        return ClipImageEncoder(model, name).eval()
    hub_id = next((str(v) for v in (weights, name) if v is not None and str(v).startswith(HF_PREFIX)), None)
    if hub_id is None:
        if weights is None or not Path(weights).expanduser().is_file():
            raise WeightsUnavailableError(
                f"weights={str(weights)!r} for open_clip model {name!r} is neither an existing checkpoint file "
                f"nor a cached '{HF_PREFIX}org/repo' id (e.g. {BIOMEDCLIP!r})."
            )
    else:
        _hub_files(hub_id.removeprefix(HF_PREFIX))
    open_clip = _import_open_clip()
    args: dict[str, Any] = (
        {"cache_dir": str(hf_cache_dir())} if hub_id else {"pretrained": str(Path(weights).expanduser())}
    )  # type: ignore[arg-type]
    try:
        model = open_clip.create_model_and_transforms(hub_id or name, **args)[0]
    except (OSError, RuntimeError) as exc:  # a file not cached (offline mode), no such config, wrong checkpoint
        raise WeightsUnavailableError(
            f"open_clip could not build {hub_id or name!r} from local files: {exc}. To fix: cache every file "
            f"the model needs (for BiomedCLIP also its text model's config) or pass a local checkpoint."
        ) from exc
    return ClipImageEncoder(model, hub_id or name).eval()
