"""retrieval.ml.embed: L2-normalised pooled pre-logit embeddings from arrays, files, tensors and Datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.ml.backbones import create_backbone, embedding_dim
from retrieval.ml.embed import ImagePathDataset, embed_images
from retrieval.ml.transforms import build_transform

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A tiny random timm model with a 5-class head (embeddings must ignore the head)."""
    torch.manual_seed(0)
    return create_backbone("test_resnet", weights="random", num_classes=5)


def write_pngs(images: list[np.ndarray], folder: Path) -> list[Path]:
    """Save uint8 images as PNG files."""
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_arrays_give_unit_norm_float32_pre_logit_embeddings(model, toy):
    images, _ = toy
    seen = []
    out = embed_images(
        model,
        images[:10],
        transform=build_transform(crop=32),
        batch_size=4,
        device="cpu",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out.shape == (10, embedding_dim(model)) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_files_match_arrays_with_worker_processes(model, toy, tmp_path):
    images, _ = toy
    transform = build_transform(crop=32)
    paths = write_pngs(images[:8], tmp_path)
    from_arrays = embed_images(model, images[:8], transform=transform, batch_size=4)
    from_files = embed_images(model, paths, transform=transform, batch_size=4, num_workers=2)
    from_dataset = embed_images(model, ImagePathDataset(paths, transform), batch_size=3)
    np.testing.assert_allclose(from_files, from_arrays, atol=1e-6)
    np.testing.assert_allclose(from_dataset, from_arrays, atol=1e-6)


def test_batch_size_invariant_and_tensor_input(model):
    x = torch.randn(6, 3, 32, 32)
    one = embed_images(model, x, batch_size=1)
    six = embed_images(model, x, batch_size=6)
    np.testing.assert_allclose(one, six, atol=1e-5)
    model.eval()
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(model.forward_head(model.forward_features(x), pre_logits=True), dim=1)
    np.testing.assert_allclose(six, reference.numpy(), atol=1e-5)


def test_training_mode_restored_and_default_transform(model, toy):
    model.train()
    out = embed_images(model, toy[0][:2])  # transform from the model's data config (160 px)
    assert out.shape == (2, embedding_dim(model))
    assert model.training


def test_dataset_returns_targets(toy, tmp_path):
    paths = write_pngs(toy[0][:3], tmp_path)
    dataset = ImagePathDataset(paths, build_transform(crop=32), targets=np.array([1.0, 0.0, 1.0]))
    tensor, target = dataset[2]
    assert tensor.shape == (3, 32, 32) and target == 1.0
    with pytest.raises(ValueError):
        ImagePathDataset(paths, build_transform(), targets=[1])
