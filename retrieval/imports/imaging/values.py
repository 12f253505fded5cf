"""The modality values of a greyscale DICOM image, kept beside its 8-bit rendition for the viewer.

The rendition is windowed once at import; to re-window a CT to lung or bone in Hounsfield units, the
viewer needs the values themselves. They are stored as a 16-bit greyscale PNG (lossless, decodable in
the browser by fast-png) of the same size as the rendition, with what turns its stored numbers back
into values and what the viewer shows by default (`display`, kept on the image row):

    value = stored · scale + offset            (scale 1 when the values are whole numbers that fit)
    {"offset", "scale", "min", "max", "units" ("HU" for CT), "modality", "monochrome1",
     "rendition": {"center", "width"},   the rendition's window as a LINEAR_EXACT window in units
     "windows": [{"center", "width", "name"}, ...]}   the file's own VOI windows

Only images whose rendition is a linear window of the values get them (the file's LINEAR or
LINEAR_EXACT window, or the percentile fallback): the viewer's default view then equals the
rendition. A SIGMOID window or a VOI LUT Sequence keeps the rendition alone.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from retrieval.imports.imaging.windowing import functional_group_value, number_list, voi_function

MAX_STORED = 65535


def file_windows(ds, index: int) -> list[dict]:
    """Every Window Center/Width pair of the file (per-frame groups first), with its explanation."""
    centers = number_list(functional_group_value(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    widths = number_list(functional_group_value(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    names = functional_group_value(ds, index, "FrameVOILUTSequence", "WindowCenterWidthExplanation")
    if isinstance(names, (str, bytes)) or names is None:
        names = [names] if names else []
    out = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width is None or center is None or width <= 0:
            continue
        name = str(names[i]).strip() if i < len(names) and names[i] else ""
        out.append({"center": float(center), "width": float(width), "name": name[:64]})
    return out


def units_of(ds, modality: str | None) -> str:
    """HU for CT (unless the file says otherwise), the file's Rescale Type when it names one, else ""."""
    rescale_type = str(ds.get("RescaleType", "") or "").strip()
    if rescale_type and rescale_type.upper() != "US":
        return rescale_type[:16]
    return "HU" if (modality or "").upper() == "CT" else ""


def modality_display(
    values: np.ndarray,
    ds,
    index: int,
    *,
    modality: str | None,
    photometric: str,
    window_center: float | None,
    window_width: float | None,
    window_source: str | None,
) -> dict | None:
    """What the viewer needs beside the values, or None when the rendition is not a linear window of them."""
    if window_center is None or window_width is None or window_source not in ("dicom", "fallback"):
        return None
    function = "LINEAR_EXACT" if window_source == "fallback" else voi_function(ds, index)
    if function == "LINEAR":  # PS3.3 C.11.2.1.2.1 as a LINEAR_EXACT window: centre − ½, width − 1
        rendition = {"center": float(window_center) - 0.5, "width": max(float(window_width) - 1.0, 1e-6)}
    elif function == "LINEAR_EXACT":
        rendition = {"center": float(window_center), "width": float(window_width)}
    else:
        return None
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return {
        "units": units_of(ds, modality),
        "modality": (modality or "").upper()[:16],
        "monochrome1": photometric == "MONOCHROME1",
        "rendition": rendition,
        "windows": file_windows(ds, index),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def make_values_png(values: np.ndarray, display: dict, *, max_side: int) -> tuple[bytes, dict]:
    """The 16-bit PNG of the values at the rendition's size, and `display` with its offset and scale."""
    arr = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=display["min"])
    height, width = arr.shape
    image = Image.fromarray(np.ascontiguousarray(arr))  # float32 → mode F
    if max(width, height) > max_side:  # the rendition's size (renditions.make_rendition)
        scale_to = max_side / max(width, height)
        image = image.resize(
            (max(1, round(width * scale_to)), max(1, round(height * scale_to))), Image.Resampling.LANCZOS
        )
        arr = np.clip(np.asarray(image, dtype=np.float32), display["min"], display["max"])
    lo, hi = display["min"], display["max"]
    whole = bool(np.all(np.equal(np.mod(np.asarray(values, dtype=np.float64), 1.0), 0.0)))
    if whole and hi - lo <= MAX_STORED:
        offset, scale = float(np.floor(lo)), 1.0
    else:
        offset, scale = float(lo), max((hi - lo) / MAX_STORED, 1e-12)
    stored = np.clip(np.rint((arr.astype(np.float64) - offset) / scale), 0, MAX_STORED).astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(stored).save(out, "PNG", compress_level=6)  # uint16 → a 16-bit greyscale PNG
    return out.getvalue(), {**display, "offset": offset, "scale": scale}
