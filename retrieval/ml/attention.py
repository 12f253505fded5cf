"""Attention network (paper 003, "ATT"): DenseNet-121 with dual attention on three dense-block outputs.

Paper 003 takes the multi-level features of Mishra et al.'s MLDAM from DenseNet-121's dense blocks
(224 px input: I_A = [512, 28, 28] after dense block 2, I_B = [1024, 14, 14] after block 3,
I_C = [1024, 7, 7] after block 4) and refines them with a position attention module (PAM) and a
channel attention module (CAM) fused by element-wise sum (Chen & Ross; DANet, Fu et al. 2019).
The paper gives no further layer details, so this module makes these choices, stated here:

* each level: 1×1 conv + BN + ReLU to channels/4 (DANet's reduction before its attention heads),
  then PAM(y) + CAM(y), each with a learned residual scale γ starting at 0 (as in DANet);
* fusion: the three attended maps are global-average-pooled, concatenated (128 + 256 + 256 = 640)
  and projected by Linear + ReLU to `embed_dim` (1024 by default, the width of the CNN baseline's
  penultimate layer) — these are the penultimate features used for retrieval (L2 distance);
* a linear classifier on them, trained like the other classifiers (retrieval.ml.train.fit).

`forward_features` / `forward_head(..., pre_logits=True)` follow timm, so `embed.pooled_features`,
`embed.embed_images` and `train.fit` work unchanged; `cam_layer` is the last level's attention
output, which `saliency.grad_cam` uses by default. Deep Taylor/LRP is not defined for the
attention products here (`supports_lrp = False`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .backbones import RANDOM, create_backbone

LEVELS = ("denseblock2", "denseblock3", "denseblock4")


class PositionAttention(nn.Module):
    """DANet position attention: each position is a softmax-weighted sum over all positions; γ·out + x."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (n, hw, c')
        k = self.key(x).flatten(2)  # (n, c', hw)
        attention = torch.softmax(q @ k, dim=-1)  # (n, hw, hw): row i = where position i looks
        out = self.value(x).flatten(2) @ attention.transpose(1, 2)  # (n, c, hw)
        return self.gamma * out.reshape(n, c, h, w) + x


class ChannelAttention(nn.Module):
    """DANet channel attention: each channel is a softmax-weighted sum over channels; γ·out + x."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = x.flatten(2)  # (n, c, hw)
        energy = f @ f.transpose(1, 2)  # (n, c, c)
        energy = energy.amax(dim=-1, keepdim=True) - energy  # DANet's max-subtraction
        out = torch.softmax(energy, dim=-1) @ f
        return self.gamma * out.reshape(n, c, h, w) + x


class DualAttention(nn.Module):
    """1×1 reduction (conv + BN + ReLU), then position attention + channel attention, summed."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, reduced, 1, bias=False), nn.BatchNorm2d(reduced), nn.ReLU(inplace=True)
        )
        self.position = PositionAttention(reduced)
        self.channel = ChannelAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        return self.position(y) + self.channel(y)


class DualAttentionDenseNet(nn.Module):
    """DenseNet-121 + dual attention on dense blocks 2–4, fused to `embed_dim` penultimate features, classifier."""

    supports_lrp = False

    def __init__(
        self,
        num_classes: int = 1,
        *,
        backbone: str = "densenet121",
        weights: str | os.PathLike[str] = RANDOM,
        embed_dim: int = 1024,
        reduction: int = 4,
        drop_rate: float = 0.0,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, weights=weights, num_classes=0, **backbone_kwargs)
        features = getattr(self.backbone, "features", None)
        if not isinstance(features, nn.Module) or not all(hasattr(features, name) for name in LEVELS):
            raise ValueError(f"{backbone!r} is not a timm DenseNet (needs features.{', features.'.join(LEVELS)}).")
        channels = level_channels(self.backbone)
        self.attention = nn.ModuleList(DualAttention(c, c // reduction) for c in channels)
        self.fuse = nn.Sequential(nn.Linear(sum(c // reduction for c in channels), embed_dim), nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = embed_dim
        self.pretrained_cfg = {
            **dict(getattr(self.backbone, "pretrained_cfg", {}) or {}),
            "architecture": f"dual_attention_{backbone}",
            "classifier": "classifier",
            "num_classes": num_classes,
        }

    @property
    def cam_layer(self) -> nn.Module:
        """Grad-CAM's default layer: the attention output of the coarsest level (7×7 at 224 px)."""
        return self.attention[-1]

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The raw dense-block 2, 3 and 4 outputs ([512, 28, 28], [1024, 14, 14], [1024, 7, 7] at 224 px)."""
        out: list[torch.Tensor] = []
        for name, module in self.backbone.features.named_children():
            x = module(x)
            if name in LEVELS:
                out.append(x)
                if len(out) == len(LEVELS):
                    break
        return out

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The attention-refined maps of the three levels."""
        return [attend(level) for attend, level in zip(self.attention, self.levels(x), strict=True)]

    def forward_head(self, features: list[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Pool each level, concatenate, fuse → penultimate features (pre_logits) → logits."""
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1)
        embedding = self.head_drop(self.fuse(pooled))
        return embedding if pre_logits else self.classifier(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def level_channels(densenet: nn.Module) -> list[int]:
    """Channels of dense blocks 2, 3, 4 from the timm feature_info (block 4 = the final feature width)."""
    info = {entry["module"]: entry["num_chs"] for entry in getattr(densenet, "feature_info", [])}
    return [info.get(f"features.{LEVELS[0]}", 512), info.get(f"features.{LEVELS[1]}", 1024), int(densenet.num_features)]
