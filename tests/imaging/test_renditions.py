"""Renditions and thumbnails keep the aspect ratio under a long-side limit."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from retrieval.imports.imaging.renditions import make_rendition, make_thumbnail
from retrieval.imports.imaging.sniff import content_hash


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_rendition_long_side_and_aspect():
    pixels = np.zeros((1000, 2000), dtype=np.uint8)
    image = opened(make_rendition(pixels, max_side=1024))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (1024, 512))


def test_webp_rendition_of_a_portrait_rgb_image():
    pixels = np.zeros((1500, 600, 3), dtype=np.uint8)
    image = opened(make_rendition(pixels, max_side=1024, fmt="WEBP"))
    assert image.format == "WEBP"
    assert image.size == (410, 1024)


def test_small_images_are_not_upscaled():
    assert opened(make_rendition(np.zeros((50, 100), dtype=np.uint8))).size == (100, 50)


def test_thumbnail():
    image = opened(make_thumbnail(np.zeros((512, 384), dtype=np.uint8)))
    assert max(image.size) == 256 and image.size == (192, 256)


def test_lanczos_keeps_a_smooth_gradient_close():
    gradient = np.tile(np.linspace(0, 255, 2048), (64, 1)).astype(np.uint8)
    small = np.asarray(opened(make_rendition(gradient, max_side=512)), dtype=float)
    expected = np.tile(np.linspace(0, 255, 512), (16, 1))
    assert np.abs(small[:, 8:-8] - expected[:, 8:-8]).max() < 3


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4), dtype=np.uint16), np.zeros((4, 4, 4), dtype=np.uint8), np.zeros(4, np.uint8)]
)
def test_invalid_pixels_are_refused(pixels):
    with pytest.raises(ValueError):
        make_rendition(pixels)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unsupported rendition format"):
        make_rendition(np.zeros((4, 4), dtype=np.uint8), fmt="GIF")


def test_content_hash_is_sha256_hex():
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(content_hash(b"")) == 64
