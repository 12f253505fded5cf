"""Raw (unnormalised) penultimate features for Euclidean retrieval (papers 001/003): embed and FAISS L2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval.ml.backbones import create_backbone
from retrieval.ml.embed import embed_images, pooled_features
from retrieval.ml.index import VectorIndex
from retrieval.ml.metrics import pairwise_distances

pytestmark = pytest.mark.ml


def test_raw_embeddings_are_the_pooled_features_and_l2_ranks_them_unlike_cosine():
    torch.manual_seed(0)
    model = create_backbone("test_resnet", weights="random", num_classes=3).eval()
    x = torch.rand(12, 3, 32, 32) * torch.linspace(0.2, 3.0, 12)[:, None, None, None]  # different feature norms
    raw = embed_images(model, x, batch_size=5, normalise=False)
    unit = embed_images(model, x, batch_size=5)
    with torch.inference_mode():
        expected = pooled_features(model, x).numpy()
    assert np.allclose(raw, expected, atol=1e-5) and not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert np.allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    for kind in ("flat", "hnsw"):
        index = VectorIndex.build(raw, np.arange(100, 112), kind=kind, metric="l2")
        scores, ids = index.search(raw[:1], 11, exclude_ids=[100])
        d = pairwise_distances(raw[:1], raw, "l2")[0]
        assert ids[0].tolist() == (100 + np.argsort(d)[1:]).tolist()
        assert np.allclose(np.sqrt(scores[0]), np.sort(d)[1:], rtol=1e-4, atol=1e-4)
    cosine = np.argsort(pairwise_distances(raw[:1], raw, "cosine")[0])[1:]
    assert cosine.tolist() != np.argsort(d)[1:].tolist()  # raw L2 is not cosine in disguise
