"""retrieval.ml.attention: DenseNet-121 + dual attention on three dense-block levels (paper 003's ATT network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.ml.attention import ChannelAttention, DualAttentionDenseNet, PositionAttention
from retrieval.ml.backbones import data_config, embedding_dim
from retrieval.ml.embed import embed_images, pooled_features
from retrieval.ml.saliency import grad_cam, lrp_relevance

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def model() -> DualAttentionDenseNet:
    """One random attention network (binary head) for the whole module."""
    torch.manual_seed(0)
    return DualAttentionDenseNet(num_classes=1).eval()


def test_levels_attention_and_head_have_the_papers_shapes_at_224(model):
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():  # one backbone pass, the rest by hand
        levels = model.levels(x)
        attended = [attend(level) for attend, level in zip(model.attention, levels, strict=True)]
        embedding = model.forward_head(attended, pre_logits=True)
        logits = model.classifier(embedding)
    assert [tuple(t.shape[1:]) for t in levels] == [(512, 28, 28), (1024, 14, 14), (1024, 7, 7)]
    assert [tuple(t.shape[1:]) for t in attended] == [(128, 28, 28), (256, 14, 14), (256, 7, 7)]
    assert embedding.shape == (1, 1024) and logits.shape == (1, 1)


def test_small_input_forward_embedding_and_gradients(model):
    x = torch.randn(2, 3, 32, 32)
    model.train()
    try:
        model(x).sum().backward()
    finally:
        model.eval()
    assert all(a.position.gamma.grad is not None for a in model.attention)
    model.zero_grad(set_to_none=True)
    with torch.inference_mode():
        assert model(x).shape == (2, 1)
        assert pooled_features(model, x).shape == (2, embedding_dim(model)) == (2, 1024)
    out = embed_images(model, x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert data_config(model)["input_size"] == (3, 224, 224)


def test_grad_cam_defaults_to_the_last_attention_level_and_lrp_is_refused(model):
    cam = grad_cam(model, torch.randn(1, 3, 32, 32))
    assert cam.shape == (1, 32, 32) and torch.isfinite(cam).all()
    with pytest.raises(NotImplementedError, match="supports_lrp"):
        lrp_relevance(model, torch.randn(1, 3, 32, 32))


def test_attention_modules_start_as_identity_and_keep_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7)
    position, channel = PositionAttention(16), ChannelAttention()
    torch.testing.assert_close(position(x), x)  # γ = 0 at initialisation, as in DANet
    torch.testing.assert_close(channel(x), x)
    with torch.no_grad():
        position.gamma.fill_(1.0)
        channel.gamma.fill_(1.0)
    assert position(x).shape == channel(x).shape == x.shape
    assert not torch.allclose(position(x), x) and not torch.allclose(channel(x), x)


def test_rejects_a_backbone_without_dense_blocks():
    with pytest.raises(ValueError, match="DenseNet"):
        DualAttentionDenseNet(backbone="test_resnet")
