"""Shared fixtures for retrieval/ml tests: tiny random timm models and toy images (CPU, small sizes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def toy_images(n: int, *, size: int = 32, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Greyscale uint8 images of two classes: a bright blob in the top (0) or bottom (1) half, plus noise.

    Top/bottom survives horizontal flips and ±5° rotations, so it is learnable with augmentation.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size]
    images = []
    for label in labels:
        cy = rng.uniform(0.15, 0.35) * size if label == 0 else rng.uniform(0.65, 0.85) * size
        cx = rng.uniform(0.3, 0.7) * size
        blob = 200.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 8) ** 2))
        noise = rng.normal(30.0, 15.0, (size, size))
        images.append(np.clip(blob + noise, 0, 255).astype(np.uint8))
    return images, labels.astype(np.int64)


@pytest.fixture
def toy() -> tuple[list[np.ndarray], np.ndarray]:
    """40 toy images (32 px) and their 0/1 labels."""
    return toy_images(40)


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME and TORCH_HOME pointing to empty temporary folders; returns the HF hub cache path."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf" / "hub"


@pytest.fixture
def make_toy():
    """The toy image generator, for tests that need their own sizes or seeds."""
    return toy_images
