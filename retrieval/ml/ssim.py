"""SSIM baseline (papers 001/003): rank a catalogue by structural similarity to the query, highest first.

The papers compute SSIM "directly between test and catalogue images, using its default values":
skimage's `structural_similarity` with its defaults (7×7 uniform window, K1 = 0.01, K2 = 0.03,
sample covariance; data range 255 for 8-bit images). Images of different sizes are first made
greyscale and resized to `size`×`size` (PIL bilinear, antialiased when shrinking), as the platform's
SSIM runs do. A vectorised re-implementation over the stacked catalogue was measured no faster than
skimage per pair (the 7×7 filters dominate either way; resizing large images costs more than both),
so skimage is called directly: see benchmarks/bench_ssim.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

ImageLike = np.ndarray | Image.Image


def _greyscale(image: ImageLike) -> Image.Image:
    """A PIL "L" image; 8-bit greyscale/RGB directly, anything else through transforms.to_pil (imports torch)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
        image = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    if isinstance(image, Image.Image) and image.mode in ("L", "RGB"):
        return image.convert("L")
    from .transforms import to_pil  # 16-bit, float or unusual modes: the shared rescaling rules

    return to_pil(image).convert("L")


def prepare(image: ImageLike, size: int | None = 128) -> np.ndarray:
    """Greyscale uint8 (size, size) array of a PIL image or uint8 array; `size=None` keeps the resolution."""
    pil = _greyscale(image)
    if size is not None and pil.size != (size, size):
        pil = pil.resize((size, size), Image.BILINEAR)
    return np.asarray(pil)


def ssim_scores(query: ImageLike, candidates: Sequence[ImageLike], size: int | None = 128) -> np.ndarray:
    """SSIM (n,) of each candidate against the query, both greyscale and resized to size×size."""
    q = prepare(query, size)
    scores = np.empty(len(candidates), dtype=np.float64)
    for i, candidate in enumerate(candidates):
        c = prepare(candidate, size)
        if c.shape != q.shape:
            raise ValueError(f"candidate {i} is {c.shape}, the query {q.shape}: give a size to resize both.")
        scores[i] = structural_similarity(q, c, data_range=255)
    return scores


def ssim_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − SSIM of two prepared (`prepare`) greyscale uint8 arrays of one shape: what SSIM runs rank by."""
    return 1.0 - float(structural_similarity(a, b, data_range=255))


def ssim_rank(
    query_uint8: ImageLike, candidates_uint8: Sequence[ImageLike], size: int | None = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(order, scores): candidate indices from most to least similar (ties by index) and each candidate's SSIM."""
    scores = ssim_scores(query_uint8, candidates_uint8, size)
    return np.argsort(-scores, kind="stable"), scores
