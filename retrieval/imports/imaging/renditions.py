"""Encoded renditions and thumbnails of decoded display pixels (PNG, WEBP or JPEG)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image


def _as_pillow(pixels: np.ndarray) -> Image.Image:
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), mode="L")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    raise ValueError(f"pixels must be H×W or H×W×3, got shape {arr.shape}")


def make_rendition(pixels: np.ndarray, *, max_side: int = 1024, fmt: Literal["PNG", "WEBP", "JPEG"] = "PNG") -> bytes:
    """Encoded image whose long side is at most `max_side` (Lanczos, aspect kept, never
    upscaled). PNG is lossless; WEBP/JPEG use quality 90."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    fmt = fmt.upper()
    if fmt not in ("PNG", "WEBP", "JPEG"):
        raise ValueError(f"unsupported rendition format {fmt!r} (PNG, WEBP or JPEG)")
    image = _as_pillow(pixels)
    width, height = image.size
    long_side = max(width, height)
    if long_side > max_side:
        scale = max_side / long_side
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", compress_level=6)
    elif fmt == "WEBP":
        image.save(out, "WEBP", quality=90, method=4)
    else:
        image.save(out, "JPEG", quality=90)
    return out.getvalue()


def make_thumbnail(pixels: np.ndarray, *, max_side: int = 256, fmt: Literal["PNG", "WEBP", "JPEG"] = "PNG") -> bytes:
    """A small rendition for grids and lists (long side ≤ `max_side`)."""
    return make_rendition(pixels, max_side=max_side, fmt=fmt)
