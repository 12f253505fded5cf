"""Preprocessing as in the papers: greyscale → 3 channels, resize 256 → crop 224, normalise; flip, ±5° for training."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP = 224
RESIZE_RATIO = 256 / 224  # the papers resize to 256 and crop 224
ROTATION_DEGREES = 5.0
_INTERPOLATIONS = {
    "nearest": T.InterpolationMode.NEAREST,
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
}


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image in mode "L" (greyscale, 16-bit rescaled) or "RGB" from a PIL image or a uint8 array.

    Greyscale stays single-channel through resizing and cropping (a third of the work); the
    channel is copied to 3 only after ToTensor, by `to_three_channels`.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"expected a uint8 array, got {image.dtype}: window/rescale to 8 bit first.")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3), got {image.shape}.")
        image = Image.fromarray(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _rescale_to_8bit(image)
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode in ("1", "LA", "La") else "RGB")


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL RGB image from a PIL image or a uint8 array (H, W), (H, W, 1), (H, W, 3); grey copied to 3 channels."""
    return to_pil(image).convert("RGB")


def to_three_channels(tensor: torch.Tensor) -> torch.Tensor:
    """A (1, H, W) greyscale tensor repeated to (3, H, W); 3-channel tensors unchanged."""
    return tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """Min-max rescale a 16/32-bit greyscale PIL image to 8 bit (no windowing information is available here)."""
    pixels = np.asarray(image, dtype=np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.round(scaled).astype(np.uint8))


def build_transform(
    config: Mapping[str, Any] | None = None,
    *,
    train: bool = False,
    crop: int | None = None,
    resize: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
    rotation: float = ROTATION_DEGREES,
    hflip: float = 0.5,
) -> T.Compose:
    """Image → normalised (3, crop, crop) tensor; sizes/mean/std from arguments, else the data config, else defaults."""
    config = config or {}
    crop = crop or int(config.get("input_size", (3, DEFAULT_CROP, DEFAULT_CROP))[-1])
    resize = resize or round(crop * RESIZE_RATIO)
    mode = _INTERPOLATIONS[interpolation or config.get("interpolation") or "bilinear"]
    steps: list[Any] = [to_pil, T.Resize((resize, resize), interpolation=mode)]
    if train and rotation:
        steps.append(T.RandomRotation(rotation, interpolation=T.InterpolationMode.BILINEAR))
    steps.append(T.CenterCrop(crop))
    if train and hflip:
        steps.append(T.RandomHorizontalFlip(hflip))
    steps += [
        T.ToTensor(),
        to_three_channels,
        T.Normalize(
            _triple(mean if mean is not None else config.get("mean") or IMAGENET_MEAN),
            _triple(std if std is not None else config.get("std") or IMAGENET_STD),
        ),
    ]
    return T.Compose(steps)


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    """Per-channel statistics for 3 channels; a single greyscale value is repeated."""
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 values, got {len(values)}.")
    return values  # type: ignore[return-value]


def dataset_mean_std(
    images: Iterable[Image.Image | np.ndarray], *, size: int = 256
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0–1 scale) of a dataset after greyscale → RGB and resizing, for `build_transform`."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for image in images:
        pixels = np.asarray(to_rgb(image).resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
        flat = pixels.reshape(-1, 3)
        total += flat.sum(axis=0)
        total_sq += (flat**2).sum(axis=0)
        count += flat.shape[0]
    if count == 0:
        raise ValueError("no images given.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(mean.tolist()), tuple(std.tolist())
