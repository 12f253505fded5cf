"""Huge images are refused from their header, before any pixel is allocated."""

import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import dataset_bytes


def png_bytes(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of zeros, compressed row by row (a ~50 kB file).

    Written by hand rather than by Pillow because Pillow would need the 400-megapixel
    image in memory (one byte per pixel for mode "1") to save it.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    return png_bytes(20000, 20000)


def test_the_bomb_is_a_small_valid_png(bomb_png):
    assert len(bomb_png) < 1_000_000
    with pytest.raises(Image.DecompressionBombError):  # Pillow's own guard agrees
        Image.open(io.BytesIO(bomb_png))
    assert png_bytes(30, 20)[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode_image(png_bytes(30, 20)).pixels.shape == (20, 30)


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Any pixel decoding fails the test: a bomb must be refused from its header alone."""
    decoded = []

    def refuse(self, *args, **kwargs):
        decoded.append(self.size)
        raise AssertionError(f"pixels of a {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    yield decoded
    assert not decoded, decoded


def test_png_bomb_is_refused_from_its_header_with_the_sizes(bomb_png, no_pixel_decoding):
    with pytest.raises(ImageDecodeError, match=r"20000×20000 pixels exceeds the limit of 64,000,000"):
        decode_image(bomb_png)


def test_limit_is_a_parameter():
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 500"):
        decode_image(png_bytes(30, 20), max_pixels=500)


def test_jpeg_bomb_is_refused_from_the_frame_header(no_pixel_decoding):
    out = io.BytesIO()
    Image.new("L", (16, 16), 128).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(ImageDecodeError, match="60000×60000 pixels exceeds"):
        decode_image(bytes(data))


def test_dicom_bomb_is_refused_before_decoding(ct_small):
    ct_small.Rows = ct_small.Columns = 50000
    expected = r"image of 50000×50000 pixels exceeds the limit of 64,000,000"
    with pytest.raises(ImageDecodeError, match=expected):
        decode_image(dataset_bytes(ct_small))


def test_dicom_frames_count_towards_the_limit(ct_small):
    ct_small.NumberOfFrames = 5000  # 128 × 128 × 5000 = 81,920,000
    with pytest.raises(ImageDecodeError, match=r"128×128×5000 frames pixels exceeds"):
        decode_image(dataset_bytes(ct_small))
