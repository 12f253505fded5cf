"""`decode_image`: DICOM, PNG or JPEG bytes into display-ready 8-bit pixels.

The pixel budget (a decompression-bomb limit) is checked from the header before any pixel is
decoded. DICOM greyscale goes through the modality LUT and the VOI window (`windowing`), then
MONOCHROME1 is inverted; any exception raised by pydicom, Pillow or numpy on hostile input
becomes `ImageDecodeError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from retrieval.imports.imaging.dicom import (
    element_int,
    element_text,
    ensure_transfer_syntax,
    header_from_dataset,
    read_dataset,
    sop_class_name,
)
from retrieval.imports.imaging.errors import ImageDecodeError, short_reason
from retrieval.imports.imaging.pixeldata import check_decodable, decode_frame
from retrieval.imports.imaging.sniff import describe_unknown, sniff_format
from retrieval.imports.imaging.values import modality_display
from retrieval.imports.imaging.windowing import colour_to_display, modality_values, voi_to_display

DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class DecodedImage:
    #: uint8 H×W greyscale ready for display, or uint8 H×W×3 RGB for colour images.
    pixels: np.ndarray
    source_format: str
    width: int
    height: int
    modality: str | None = None
    view_position: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    #: Raw Patient ID: the caller pseudonymises it and never stores it.
    patient_id: str | None = None
    window_center: float | None = None
    window_width: float | None = None
    window_source: Literal["dicom", "fallback"] | None = None
    frames: int = 1
    #: DICOM Photometric Interpretation; None for PNG and JPEG files.
    photometric: str | None = None
    #: Which frame of a multi-frame image `pixels` shows.
    frame_index: int = 0
    #: Greyscale DICOM whose rendition is a linear window: the modality values (float32 H×W) and what
    #: the viewer needs beside them (imaging.values); None otherwise.
    values: np.ndarray | None = None
    values_display: dict | None = None


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, frame: int | None = None) -> DecodedImage:
    """Decode DICOM, PNG or JPEG bytes into display-ready 8-bit pixels.

    The pixel budget (Rows×Columns×frames for DICOM, width×height for PNG/JPEG) is checked
    from the header before any pixel is decoded. Multi-frame DICOM shows the middle frame
    unless `frame` (0-based) is given. Raises ImageDecodeError and nothing else.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(describe_unknown(data))
    try:
        if fmt == "dicom":
            return _decode_dicom(data, max_pixels=max_pixels, frame=frame)
        return _decode_pillow(data, fmt, max_pixels=max_pixels)
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageDecodeError(f"{fmt.upper()} image too large to decode in memory") from exc
    except Exception as exc:
        raise ImageDecodeError(f"unreadable {fmt.upper()} image: {short_reason(exc)}") from exc


def _check_pixel_budget(width: int, height: int, frames: int, max_pixels: int) -> None:
    total = width * height * frames
    if total > max_pixels:
        size = f"{width}×{height}" + (f"×{frames} frames" if frames > 1 else "")
        raise ImageDecodeError(f"image of {size} pixels exceeds the limit of {max_pixels:,} pixels")


# ---- PNG / JPEG


def _decode_pillow(data: bytes, fmt: str, *, max_pixels: int) -> DecodedImage:
    # Open through the plugin class rather than Image.open: the size is known from the
    # header here and checked against *our* budget before load() allocates anything, and
    # Pillow's process-wide MAX_IMAGE_PIXELS is left alone.
    stream = io.BytesIO(data)
    try:
        if fmt == "png":
            image = PngImagePlugin.PngImageFile(stream)
        else:
            image = JpegImagePlugin.JpegImageFile(stream)
    except Exception as exc:
        raise ImageDecodeError(f"unreadable {fmt.upper()} header: {short_reason(exc)}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{fmt.upper()} image of {width}×{height} pixels has no pixels")
    _check_pixel_budget(width, height, 1, max_pixels)
    try:
        image.load()
    except Exception as exc:
        raise ImageDecodeError(f"corrupt or truncated {fmt.upper()} data: {short_reason(exc)}") from exc
    image = ImageOps.exif_transpose(image) or image
    pixels = _pillow_to_display(image)
    return DecodedImage(
        pixels=pixels,
        source_format=fmt,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
    )


def _pillow_to_display(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode.startswith("I") or mode.startswith("F"):
        # 16-bit (or 32-bit) greyscale: linear min-max to 0..255, no clipping.
        return _minmax_uint8(np.asarray(image).astype(np.float64))
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return _collapse_grey(rgb)


def _minmax_uint8(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape[:2], dtype=np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(values.shape[:2], dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _collapse_grey(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 that is really grey (R≈G≈B, as most exported radiographs) becomes H×W."""
    signed = rgb.astype(np.int16)
    spread = np.abs(signed[..., 0] - signed[..., 1]) + np.abs(signed[..., 1] - signed[..., 2])
    if np.count_nonzero(spread > 8) <= 0.001 * spread.size:
        luma = signed[..., 0] * 299 + signed[..., 1] * 587 + signed[..., 2] * 114
        return ((luma + 500) // 1000).astype(np.uint8)
    return np.ascontiguousarray(rgb)


# ---- DICOM


def _decode_dicom(data: bytes, *, max_pixels: int, frame: int | None) -> DecodedImage:
    ds = read_dataset(data, stop_before_pixels=False)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageDecodeError(f"DICOM without pixel data (SOP class {sop_class_name(ds)})")
    header = header_from_dataset(ds)
    rows, columns, frames = header.rows, header.columns, header.frames
    _check_pixel_budget(columns, rows, frames, max_pixels)

    samples = element_int(ds, "SamplesPerPixel") or 1
    bits_allocated = element_int(ds, "BitsAllocated")
    if samples not in (1, 3):
        raise ImageDecodeError(f"unsupported Samples per Pixel {samples} (expected 1 or 3)")
    if bits_allocated not in (1, 8, 16, 32, 64):
        raise ImageDecodeError(f"unsupported Bits Allocated {bits_allocated}")
    photometric = (element_text(ds, "PhotometricInterpretation") or "").upper()
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        ds.PhotometricInterpretation = photometric

    index = frames // 2 if frame is None else frame
    if not 0 <= index < frames:
        raise ImageDecodeError(f"frame {frame} requested but the image has {frames} frame(s)")

    ensure_transfer_syntax(ds)
    plugins = check_decodable(ds, rows=rows, columns=columns, frames=frames, samples=samples)
    arr = decode_frame(ds, index=index if frames > 1 else None, plugins=plugins)
    if arr.ndim == 3 and arr.shape[0] == 1 and samples == 1:
        arr = arr[0]
    expected = (rows, columns) if samples == 1 else (rows, columns, 3)
    if tuple(arr.shape) != expected:
        raise ImageDecodeError(f"decoded pixel array has shape {tuple(arr.shape)}, header says {expected}")

    window_center = window_width = None
    window_source = None
    values = display = None
    if samples == 3 or photometric == "PALETTE COLOR":
        pixels = colour_to_display(arr, ds, photometric)
    else:
        values = modality_values(arr, ds, index)
        pixels, window_center, window_width, window_source = voi_to_display(values, arr, ds, index)
        if photometric == "MONOCHROME1":
            pixels = 255 - pixels
        display = modality_display(
            values,
            ds,
            index,
            modality=header.modality,
            photometric=photometric,
            window_center=window_center,
            window_width=window_width,
            window_source=window_source,
        )
        if display is None:
            values = None
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format="dicom",
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        modality=header.modality,
        view_position=header.view_position,
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        sop_instance_uid=header.sop_instance_uid,
        patient_id=header.patient_id,
        window_center=window_center,
        window_width=window_width,
        window_source=window_source,
        frames=frames,
        photometric=photometric,
        frame_index=index,
        values=values,
        values_display=display,
    )
