"""PNG and JPEG decoding: grey normalised to uint8, colour kept, EXIF orientation applied."""

import io

import numpy as np
import pytest
from PIL import Image

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_8_bit_grey_png_is_unchanged():
    pixels = (np.arange(30 * 20).reshape(20, 30) % 256).astype(np.uint8)
    image = decode_image(encode(Image.fromarray(pixels)))
    assert np.array_equal(image.pixels, pixels)
    assert (image.width, image.height, image.source_format) == (30, 20, "png")
    assert image.window_source is None and image.photometric is None


def test_16_bit_grey_png_is_scaled_min_to_max():
    pixels = np.linspace(1000, 5000, 64, dtype=np.uint16).reshape(8, 8)
    image = decode_image(encode(Image.fromarray(pixels)))
    assert image.pixels.dtype == np.uint8
    assert image.pixels.min() == 0 and image.pixels.max() == 255
    expected = np.rint((pixels.astype(float) - 1000) / 4000 * 255)
    assert np.array_equal(image.pixels, expected.astype(np.uint8))


def test_grey_saved_as_rgb_becomes_single_channel():
    grey = (np.arange(16 * 16).reshape(16, 16) % 256).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    assert decode_image(encode(Image.fromarray(rgb))).pixels.shape == (16, 16)
    assert decode_image(encode(Image.fromarray(rgb), "JPEG", quality=95)).pixels.ndim == 2


def test_colour_stays_rgb():
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[:, 6:, 2] = 150
    image = decode_image(encode(Image.fromarray(rgb)))
    assert image.pixels.shape == (10, 12, 3)
    assert np.array_equal(image.pixels, rgb)


@pytest.mark.parametrize("mode", ["1", "LA", "P", "RGBA", "I;16"])
def test_other_pillow_modes_decode(mode):
    image = decode_image(encode(Image.new(mode, (9, 7))))
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[:2] == (7, 9)


def test_exif_orientation_is_applied():
    wide = Image.new("L", (40, 20), 0)
    wide.paste(255, (0, 0, 10, 20))  # a bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = decode_image(encode(wide, "JPEG", exif=exif.tobytes(), quality=95))
    assert (image.width, image.height) == (20, 40)
    assert image.pixels[:10].mean() > 200  # the left band is now at the top


def test_truncated_png_is_a_decode_error():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    with pytest.raises(ImageDecodeError, match="corrupt or truncated PNG"):
        decode_image(data[: len(data) // 2])
