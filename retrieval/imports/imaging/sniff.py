"""The format of uploaded bytes (DICOM, PNG or JPEG) from their first bytes, and why other
bytes are refused."""

from __future__ import annotations

import hashlib
import io
import struct
from typing import Literal

import pydicom

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

_UNSUPPORTED_MAGIC = (
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 (JP2) file"),
    (b"\xff\x4f\xff\x51", "a raw JPEG 2000 codestream"),
    (b"RIFF", "a RIFF (e.g. WebP) file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
)


def sniff_format(data: bytes) -> Literal["dicom", "png", "jpeg"] | None:
    """The image format of `data`, or None when it is none of DICOM, PNG or JPEG."""
    if data[:8] == _PNG_MAGIC:
        return "png"
    if data[:3] == _JPEG_MAGIC:
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if looks_like_raw_dicom(data):
        try:
            ds = dcmread_bytes(data, stop_before_pixels=False)
        except Exception:
            return None
        if "PixelData" in ds and "Rows" in ds and "Columns" in ds:
            return "dicom"
    return None


def looks_like_raw_dicom(data: bytes) -> bool:
    """Cheap test for a DICOM data set without the 128-byte preamble and 'DICM'.

    Such files (old ACR-NEMA style exports) start with an element of group 0002 or 0008
    in either byte order. The full parse in `sniff_format` then also has to find Rows,
    Columns and Pixel Data, so random bytes are not mistaken for DICOM.
    """
    if len(data) < 16:
        return False
    group_le, element_le = struct.unpack("<HH", data[:4])
    group_be = struct.unpack(">H", data[:2])[0]
    return (group_le in (0x0002, 0x0008) and element_le < 0x2000) or group_be == 0x0008


def describe_unknown(data: bytes) -> str:
    """Why bytes that `sniff_format` does not recognise are refused, for the import report."""
    if not data:
        return "empty file: not a DICOM, PNG or JPEG file"
    if looks_like_raw_dicom(data):
        try:
            elements = len(dcmread_bytes(data, stop_before_pixels=True))
        except Exception:
            elements = 0
        if elements >= 3:
            return "DICOM data set without an image (no Rows, Columns and Pixel Data)"
    for magic, what in _UNSUPPORTED_MAGIC:
        if data.startswith(magic):
            return f"{what} is not supported: not a DICOM, PNG or JPEG file"
    return "not a DICOM, PNG or JPEG file"


def content_hash(data: bytes) -> str:
    """SHA-256 of the bytes as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def dcmread_bytes(data: bytes, *, stop_before_pixels: bool):
    """pydicom's lenient parse (force=True) of DICOM bytes, with or without a preamble."""
    return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
