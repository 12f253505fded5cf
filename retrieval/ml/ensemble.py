"""Per-finding classifier ensemble (paper 000): binary classifiers per finding → multi-label description + embedding.

Paper 000 fine-tunes one ViT per finding as a binary classifier (Cardiomegaly, Opacity, Emphysema,
each against "No Finding") and ensembles them into a multi-label classification; the retrieval
embedding is "the activations of the last layer" with the softmax removed, compared by L2/cosine.
For one binary model that is its pooled pre-logit feature vector (timm's
``forward_head(..., pre_logits=True)``). For the ensemble the paper does not say how the per-finding
embeddings are combined; `FindingEnsemble` offers:

* ``"concat"`` (default): each member's pre-logit features L2-normalised, concatenated and divided
  by √M, so the result has unit norm and its cosine similarity between two images is the *mean of
  the per-finding cosine similarities* — every finding counts equally whatever its width;
* ``"mean"``: the mean of the normalised member features, re-normalised (members of equal width).

A member with one logit is a binary classifier (probability = sigmoid); a member with two logits
is read as softmax over (negative, positive), i.e. the logit difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import embedding_dim

FINDINGS = ("Cardiomegaly", "Opacity", "Emphysema")
NO_FINDING = "No Finding"
EMBEDDINGS = ("concat", "mean")


def _member_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm forward_features, or the input itself for a model without it (its head then runs the whole model)."""
    return model.forward_features(x) if hasattr(model, "forward_features") else x


def _member_head(model: nn.Module, features: torch.Tensor, pre_logits: bool) -> torch.Tensor:
    """Pre-logit features (n, d) or the positive-class log-odds (n,) of one member."""
    if hasattr(model, "forward_head"):
        out = model.forward_head(features, pre_logits=pre_logits)
    else:
        out = model(features)
    if pre_logits:
        return out.flatten(1)
    logits = out.reshape(len(out), -1)
    if logits.shape[1] == 1:
        return logits[:, 0]
    if logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"a finding model must have 1 or 2 outputs, got {logits.shape[1]}.")


class FindingEnsemble(nn.Module):
    """Binary per-finding classifiers as one multi-label model: logits (n, F) and a combined embedding."""

    def __init__(self, models: Mapping[str, nn.Module], *, embedding: str = "concat") -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model.")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}.")
        self.findings = tuple(models)
        self.members = nn.ModuleDict({_key(name): model for name, model in models.items()})
        self.embedding = embedding
        widths = [embedding_dim(m) for m in self.members.values()]
        if embedding == "mean" and len(set(widths)) > 1:
            raise ValueError(f"embedding='mean' needs members of equal width, got {widths}.")
        self.num_classes = len(self.findings)
        self.num_features = self.head_hidden_size = sum(widths) if embedding == "concat" else widths[0]
        first = next(iter(self.members.values()))
        self.pretrained_cfg = dict(getattr(first, "pretrained_cfg", {}) or {}, classifier=None)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's unpooled features."""
        return [_member_features(m, x) for m in self.members.values()]

    def forward_head(self, features: Sequence[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Combined unit-norm embedding (pre_logits) or per-finding log-odds (n, F)."""
        parts = [_member_head(m, f, pre_logits) for m, f in zip(self.members.values(), features, strict=True)]
        if not pre_logits:
            return torch.stack(parts, dim=1)
        parts = [F.normalize(p, dim=1) for p in parts]
        if self.embedding == "concat":
            return torch.cat(parts, dim=1) / math.sqrt(len(parts))
        return F.normalize(torch.stack(parts).mean(dim=0), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _key(name: str) -> str:
    """A ModuleDict key for a finding name (no dots or spaces)."""
    return name.replace(".", "_").replace(" ", "_")


def as_ensemble(models: FindingEnsemble | Mapping[str, nn.Module], embedding: str = "concat") -> FindingEnsemble:
    """The ensemble itself, or one built from a {finding: model} mapping."""
    return models if isinstance(models, FindingEnsemble) else FindingEnsemble(models, embedding=embedding)


@torch.no_grad()
def _evaluate(ensemble: FindingEnsemble, x: torch.Tensor, pre_logits: bool) -> torch.Tensor:
    """One eval-mode forward of the ensemble; every submodule's training flag is restored."""
    modes = [(module, module.training) for module in ensemble.modules()]
    ensemble.eval()
    try:
        return ensemble.forward_head(ensemble.forward_features(x), pre_logits=pre_logits)
    finally:
        for module, training in modes:
            module.training = training


def ensemble_probabilities(models: FindingEnsemble | Mapping[str, nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Per-finding probabilities (n, F), columns in the order of the findings."""
    return torch.sigmoid(_evaluate(as_ensemble(models), x, pre_logits=False))


def ensemble_embedding(
    models: FindingEnsemble | Mapping[str, nn.Module], x: torch.Tensor, mode: str = "concat"
) -> torch.Tensor:
    """Unit-norm combined last-layer embedding (n, D) of the per-finding models (see the module docstring)."""
    ensemble = as_ensemble(models, mode)
    if ensemble.embedding != mode:
        ensemble = FindingEnsemble(dict(zip(ensemble.findings, ensemble.members.values(), strict=True)), embedding=mode)
    return _evaluate(ensemble, x, pre_logits=True)


def multilabel(probabilities: torch.Tensor | np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """0/1 matrix (n, F): finding present when its probability ≥ threshold."""
    p = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else np.asarray(probabilities)
    return (p >= threshold).astype(np.int64)


def describe(
    probabilities: torch.Tensor | np.ndarray,
    findings: Sequence[str] = FINDINGS,
    threshold: float = 0.5,
) -> list[tuple[str, ...]]:
    """Multi-label description per image: the findings present, or ("No Finding",) when none is."""
    labels = multilabel(probabilities, threshold)
    if labels.shape[1] != len(findings):
        raise ValueError(f"{labels.shape[1]} probability columns but {len(findings)} finding names.")
    return [tuple(f for f, on in zip(findings, row, strict=True) if on) or (NO_FINDING,) for row in labels]
