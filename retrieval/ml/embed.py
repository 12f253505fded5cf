"""Embeddings: pooled pre-logit features of a timm model, L2-normalised, for images, files or a Dataset."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .backbones import data_config, embedding_dim
from .device import autocast, resolve_device
from .transforms import build_transform

Progress = Callable[[int, int], None]
ImageLike = Image.Image | np.ndarray


class ImagePathDataset(Dataset):
    """Image files decoded with PIL and transformed inside DataLoader workers; items are (tensor, target)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        transform: Callable[[Image.Image], torch.Tensor],
        targets: Sequence[Any] | np.ndarray | None = None,
    ) -> None:
        if targets is not None and len(targets) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets.")
        self.paths = [os.fspath(p) for p in paths]
        self.transform = transform
        self.targets = targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        with Image.open(self.paths[index]) as image:
            tensor = self.transform(image)
        return tensor, index if self.targets is None else self.targets[index]


class ImageListDataset(Dataset):
    """In-memory PIL images or uint8 arrays, transformed on access; items are (tensor, target)."""

    def __init__(
        self,
        images: Sequence[ImageLike],
        transform: Callable[[ImageLike], torch.Tensor],
        targets: Sequence[Any] | np.ndarray | None = None,
    ) -> None:
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets.")
        self.images = images
        self.transform = transform
        self.targets = targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        tensor = self.transform(self.images[index])
        return tensor, index if self.targets is None else self.targets[index]


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features (n, d): `forward_head(forward_features(x), pre_logits=True)` as timm recommends."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    else:
        features = model(x)
    return features.flatten(1)


def as_dataset(
    images: Dataset | torch.Tensor | Sequence[Any], transform: Callable[[Any], torch.Tensor] | None
) -> Dataset:
    """A Dataset from a Dataset, an (n, 3, H, W) tensor, file paths, or PIL images / uint8 arrays."""
    if isinstance(images, Dataset):
        return images
    if isinstance(images, torch.Tensor):
        return TensorDataset(images)
    if transform is None:
        raise ValueError("a transform is needed for images, paths or arrays.")
    if len(images) and isinstance(images[0], (str, os.PathLike)):
        return ImagePathDataset(images, transform)
    return ImageListDataset(images, transform)


def embed_images(
    model: nn.Module,
    images: Dataset | torch.Tensor | Sequence[Any],
    *,
    transform: Callable[[Any], torch.Tensor] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    amp: bool = True,
    progress: Progress | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """Float32 (n, d) embeddings, L2-normalised unless normalise=False (raw penultimate features, as papers
    001/003 rank by Euclidean distance); the transform defaults to the model's own data config."""
    if transform is None and not isinstance(images, (Dataset, torch.Tensor)):
        transform = build_transform(data_config(model))
    dataset = as_dataset(images, transform)
    device = resolve_device(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    total = len(dataset)  # type: ignore[arg-type]
    was_training = model.training
    model.to(device).eval()
    chunks: list[np.ndarray] = []
    done = 0
    try:
        with torch.inference_mode(), autocast(device, amp):
            for batch in loader:
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                features = pooled_features(model, x.to(device, non_blocking=True)).float()
                chunks.append((F.normalize(features, dim=1) if normalise else features).cpu().numpy())
                done += len(x)
                if progress:
                    progress(done, total)
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
