"""retrieval.ml.ensemble (paper 000): per-finding binary classifiers → probabilities, description, embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from retrieval.ml.backbones import create_backbone, embedding_dim
from retrieval.ml.embed import embed_images, pooled_features
from retrieval.ml.ensemble import (
    FINDINGS,
    FindingEnsemble,
    describe,
    ensemble_embedding,
    ensemble_probabilities,
    multilabel,
)
from retrieval.ml.saliency import grad_cam

pytestmark = pytest.mark.ml


def vit(seed: int) -> nn.Module:
    """A one-logit tiny ViT (64 px, one block), random."""
    torch.manual_seed(seed)
    return create_backbone("vit_tiny_patch16_224", weights="random", num_classes=1, img_size=64, depth=1).eval()


@pytest.fixture(scope="module")
def members() -> dict[str, nn.Module]:
    """Cardiomegaly and Opacity as tiny ViTs, Emphysema as a tiny ResNet (widths 192, 192, 96)."""
    torch.manual_seed(2)
    return {
        "Cardiomegaly": vit(0),
        "Opacity": vit(1),
        "Emphysema": create_backbone("test_resnet", weights="random", num_classes=1).eval(),
    }


def test_probabilities_are_each_models_sigmoid_in_finding_order(members):
    x = torch.randn(3, 3, 64, 64)
    probs = ensemble_probabilities(members, x)
    assert probs.shape == (3, len(FINDINGS))
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(members[f](x)[:, 0]) for f in FINDINGS], dim=1)
    torch.testing.assert_close(probs, expected)


def test_concatenated_embedding_is_unit_norm_and_averages_member_cosines(members):
    x = torch.randn(4, 3, 64, 64)
    emb = ensemble_embedding(members, x)
    assert emb.shape == (4, 192 + 192 + 96)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    with torch.no_grad():
        parts = [torch.nn.functional.normalize(pooled_features(m, x), dim=1) for m in members.values()]
    mean_cosine = sum(p[0] @ p[1] for p in parts) / 3
    torch.testing.assert_close(emb[0] @ emb[1], mean_cosine)


def test_mean_embedding_needs_equal_widths(members):
    x = torch.randn(2, 3, 64, 64)
    vits = {k: members[k] for k in ("Cardiomegaly", "Opacity")}
    emb = ensemble_embedding(vits, x, mode="mean")
    assert emb.shape == (2, 192)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="equal width"):
        FindingEnsemble(members, embedding="mean")


def test_the_ensemble_embeds_like_any_timm_model(members):
    ensemble = FindingEnsemble(members)
    x = torch.randn(5, 3, 64, 64)
    out = embed_images(ensemble, x, batch_size=2)
    assert out.shape == (5, embedding_dim(ensemble)) == (5, 480)
    np.testing.assert_allclose(out, ensemble_embedding(ensemble, x).numpy(), rtol=1e-5, atol=1e-6)
    assert ensemble(x).shape == (5, 3)
    cam = grad_cam(ensemble.members["Cardiomegaly"], x[:1])  # Grad-CAM per finding model (ViT norm1)
    assert cam.shape == (1, 64, 64)


def test_multilabel_description_names_findings_or_no_finding():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.3], [0.5, 0.5, 0.49]])
    assert multilabel(probs).tolist() == [[1, 0, 1], [0, 0, 0], [1, 1, 0]]
    assert describe(probs) == [("Cardiomegaly", "Emphysema"), ("No Finding",), ("Cardiomegaly", "Opacity")]
    assert describe(torch.tensor(probs), threshold=0.95) == [("No Finding",)] * 3
    with pytest.raises(ValueError):
        describe(probs, findings=("A", "B"))


def test_two_logit_members_are_read_as_softmax_and_wider_heads_rejected():
    torch.manual_seed(0)
    two = create_backbone("test_resnet", weights="random", num_classes=2).eval()
    x = torch.randn(2, 3, 64, 64)
    probs = ensemble_probabilities({"Opacity": two}, x)
    with torch.no_grad():
        torch.testing.assert_close(probs[:, 0], torch.softmax(two(x), dim=1)[:, 1])
    with pytest.raises(ValueError, match="1 or 2 outputs"):
        ensemble_probabilities({"Opacity": create_backbone("test_resnet", weights="random", num_classes=3)}, x)
