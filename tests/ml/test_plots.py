"""retrieval.ml.plots: t-SNE / PCA embedding maps as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from retrieval.ml.plots import embedding_map_png, project_2d

pytestmark = pytest.mark.ml


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of PNG bytes (checks the signature)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size


def test_tsne_map_with_legend():
    rng = np.random.default_rng(0)
    labels = np.repeat(["<150 lbs", "150-200 lbs", ">200 lbs"], 20)
    x = rng.normal(size=(60, 16)) + np.repeat(np.eye(3, 16) * 5, 20, axis=0)
    width, height = png_size(embedding_map_png(x, labels, title="CT weight"))
    assert width > 300 and height > 300


def test_tsne_separates_clusters():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(size=(15, 8)) + 10, rng.normal(size=(15, 8)) - 10]
    coords = project_2d(x, "tsne")
    gap = np.linalg.norm(coords[:15].mean(0) - coords[15:].mean(0))
    assert gap > coords[:15].std(0).sum()


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_small_collections_do_not_fail(n):
    x = np.random.default_rng(2).normal(size=(n, 5))
    assert png_size(embedding_map_png(x, np.arange(n) % 2))
    assert project_2d(x).shape == (n, 2)


def test_continuous_labels_and_pca():
    rng = np.random.default_rng(3)
    x, weights = rng.normal(size=(40, 6)), rng.uniform(100, 250, 40)
    assert png_size(embedding_map_png(x, weights, method="pca"))
    with pytest.raises(ValueError):
        project_2d(x, "umap")
