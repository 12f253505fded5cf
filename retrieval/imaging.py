"""Decoding, DICOM display, de-identification and renditions of uploaded images.

Pure numpy / Pillow / pydicom code with no Django import, so the import pipeline, the
management commands and the tests can all call it on plain bytes.

Display decisions (see also the docstring of `decode_image`):

* The modality LUT (Rescale Slope/Intercept, or a Modality LUT Sequence) is applied first,
  so CT values are Hounsfield units before windowing.
* The VOI window is the file's own first Window Center/Width pair, applied with our own
  implementation of the DICOM PS3.3 C.11.2.1.2 formulas (LINEAR, LINEAR_EXACT, SIGMOID)
  straight into 0..255. We do not use `pydicom.pixels.apply_voi_lut` for windows because
  it maps into the stored bit depth (a 16-bit range we would have to rescale again) and
  because the explicit formula is what the tests check by hand. A VOI LUT Sequence without
  a window is applied through pydicom. This is the "windowed according to the parameters
  of each DICOM file" of the NLST set-up in paper 000.
* Without a usable window the fallback is the 0.5-99.5 percentile range of the modality
  values (pixel padding excluded) as a LINEAR_EXACT window, recorded as
  ``window_source="fallback"``.
* MONOCHROME1 is inverted after windowing, so that air is always dark on screen.
  Presentation LUT Shape is not applied on top: in the DX/CR IODs "INVERSE" is the same
  statement as MONOCHROME1, and applying both would invert twice.
* Any exception raised by pydicom, Pillow or numpy on hostile input becomes
  `ImageDecodeError`; callers only ever catch that one type. Compressed pixel data is
  decoded by the pylibjpeg / Pillow plugins (pydicom's own for RLE), never by python-gdcm,
  which aborts the interpreter on some corrupt JPEG streams (see UNSAFE_DECODER_PLUGINS).
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

DEFAULT_MAX_PIXELS = 64_000_000

#: Modalities whose single-frame images of one series are slices of a volume.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT"})

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


class ImageDecodeError(ValueError):
    """The bytes cannot be turned into a display image; the message says why."""


# --------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes) -> Literal["dicom", "png", "jpeg"] | None:
    """The image format of `data`, or None when it is none of DICOM, PNG or JPEG."""
    if data[:8] == _PNG_MAGIC:
        return "png"
    if data[:3] == _JPEG_MAGIC:
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if _looks_like_raw_dicom(data):
        try:
            ds = _dcmread(data, stop_before_pixels=False)
        except Exception:
            return None
        if "PixelData" in ds and "Rows" in ds and "Columns" in ds:
            return "dicom"
    return None


def _looks_like_raw_dicom(data: bytes) -> bool:
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


def _describe_unknown(data: bytes) -> str:
    if not data:
        return "empty file: not a DICOM, PNG or JPEG file"
    if _looks_like_raw_dicom(data):
        try:
            elements = len(_dcmread(data, stop_before_pixels=True))
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


# --------------------------------------------------------------------------- DICOM header


@dataclass
class DicomHeader:
    sop_instance_uid: str | None
    study_uid: str | None
    series_uid: str | None
    modality: str | None
    view_position: str | None
    rows: int
    columns: int
    frames: int
    instance_number: int | None
    slice_position: float | None
    #: Raw Patient ID: the caller pseudonymises it and never stores it.
    patient_id: str | None


def _dcmread(data: bytes, *, stop_before_pixels: bool):
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)


def _read_dataset(data: bytes, *, stop_before_pixels: bool):
    """Parse DICOM bytes or raise ImageDecodeError (never another exception type)."""
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_raw_dicom(data):
        raise ImageDecodeError(
            "not a DICOM file (no 'DICM' marker at byte 128 and no DICOM data set at the start)"
        )
    try:
        ds = _dcmread(data, stop_before_pixels=stop_before_pixels)
        # pydicom parses lazily: touch every top-level element now, so that a corrupt
        # element raises here and not somewhere in the caller.
        for _ in ds.iterall():
            pass
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"unreadable DICOM: {_short(exc)}") from exc
    if len(ds) == 0:
        raise ImageDecodeError("unreadable DICOM: no data elements found")
    return ds


def _text(ds, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    text = str(value).strip()
    return text or None


def _int(ds, keyword: str) -> int | None:
    text = _text(ds, keyword)
    if text is None:
        return None
    try:
        return int(float(text))
    except (TypeError, ValueError, OverflowError):
        return None


def _floats(value, n: int) -> list[float] | None:
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(numbers) != n or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _slice_position(ds) -> float | None:
    """Position along the slice normal: IPP · (row × column) of IOP, else SliceLocation,
    else InstanceNumber."""
    try:
        ipp = _floats(ds.get("ImagePositionPatient"), 3)
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
    except Exception:
        ipp = iop = None
    if ipp is not None and iop is not None:
        normal = np.cross(np.array(iop[:3]), np.array(iop[3:]))
        if np.linalg.norm(normal) > 1e-6:
            return float(np.dot(normal / np.linalg.norm(normal), np.array(ipp)))
    text = _text(ds, "SliceLocation")
    if text is not None:
        try:
            value = float(text)
            if math.isfinite(value):
                return value
        except ValueError:
            pass
    number = _int(ds, "InstanceNumber")
    return float(number) if number is not None else None


def _sop_class(ds) -> str:
    uid = _text(ds, "SOPClassUID")
    if uid is None:
        return "not given"
    try:
        from pydicom.uid import UID

        name = UID(uid).name
    except Exception:
        return uid
    return f"{uid}, {name}" if name and name != uid else uid


def _frames(ds) -> int:
    if "NumberOfFrames" not in ds:
        return 1
    raw = _text(ds, "NumberOfFrames")
    if raw is None:
        return 1
    try:
        frames = int(raw)
    except ValueError:
        raise ImageDecodeError(f"invalid Number of Frames {raw!r} (not an integer)") from None
    if frames < 1:
        raise ImageDecodeError(f"invalid Number of Frames {frames} (must be at least 1)")
    return frames


def _dimensions(ds) -> tuple[int, int]:
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if rows is None or columns is None:
        raise ImageDecodeError(
            f"DICOM without an image (no Rows/Columns; SOP class {_sop_class(ds)})"
        )
    if rows < 1 or columns < 1:
        raise ImageDecodeError(f"DICOM image of {columns}×{rows} pixels has no pixels")
    return rows, columns


def _header_from_dataset(ds) -> DicomHeader:
    rows, columns = _dimensions(ds)
    return DicomHeader(
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        rows=rows,
        columns=columns,
        frames=_frames(ds),
        instance_number=_int(ds, "InstanceNumber"),
        slice_position=_slice_position(ds),
        patient_id=_text(ds, "PatientID"),
    )


def read_dicom_header(data: bytes) -> DicomHeader:
    """The identifying and geometric header of a DICOM image, without reading pixels."""
    ds = _read_dataset(data, stop_before_pixels=True)
    try:
        return _header_from_dataset(ds)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"unreadable DICOM header: {_short(exc)}") from exc


# --------------------------------------------------------------------------- series


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_series(headers: Sequence[tuple[K, DicomHeader]]) -> list[list[K]]:
    """Group slices of CT/MR/PT volumes; every other image is a group of its own.

    Single-frame images of a volume modality that share a Series Instance UID with at
    least one other such image form one group sorted by slice position (then instance
    number, then input order). Groups come in the order of their first member.
    """
    volume_members: dict[str, list[tuple[int, K, DicomHeader]]] = {}
    for index, (key, header) in enumerate(headers):
        if _is_volume_slice(header):
            volume_members.setdefault(header.series_uid, []).append((index, key, header))

    groups: list[list[K]] = []
    emitted: set[str] = set()
    for key, header in headers:
        members = volume_members.get(header.series_uid) if _is_volume_slice(header) else None
        if members is None or len(members) < 2:
            groups.append([key])
            continue
        if header.series_uid in emitted:
            continue
        emitted.add(header.series_uid)
        members = sorted(members, key=_slice_sort_key)
        groups.append([member_key for _, member_key, _ in members])
    return groups


def _is_volume_slice(header: DicomHeader) -> bool:
    return (
        header.series_uid is not None
        and header.frames == 1
        and (header.modality or "").upper() in VOLUME_MODALITIES
    )


def _slice_sort_key(member: tuple[int, Hashable, DicomHeader]):
    index, _, header = member
    position = header.slice_position
    number = header.instance_number
    return (
        position is None,
        position if position is not None else 0.0,
        number is None,
        number if number is not None else 0,
        index,
    )


def middle(group: Sequence[T]) -> T:
    """The middle element (index len // 2), as the NLST set-up of paper 000 takes the
    middle slice of each CT scan."""
    if not group:
        raise ValueError("middle() of an empty group")
    return group[len(group) // 2]


# --------------------------------------------------------------------------- decoding


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


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, frame: int | None = None
) -> DecodedImage:
    """Decode DICOM, PNG or JPEG bytes into display-ready 8-bit pixels.

    The pixel budget (Rows×Columns×frames for DICOM, width×height for PNG/JPEG) is checked
    from the header before any pixel is decoded. Multi-frame DICOM shows the middle frame
    unless `frame` (0-based) is given. Raises ImageDecodeError and nothing else.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(_describe_unknown(data))
    try:
        if fmt == "dicom":
            return _decode_dicom(data, max_pixels=max_pixels, frame=frame)
        return _decode_pillow(data, fmt, max_pixels=max_pixels)
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageDecodeError(f"{fmt.upper()} image too large to decode in memory") from exc
    except Exception as exc:
        raise ImageDecodeError(f"unreadable {fmt.upper()} image: {_short(exc)}") from exc


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _check_pixel_budget(width: int, height: int, frames: int, max_pixels: int) -> None:
    total = width * height * frames
    if total > max_pixels:
        size = f"{width}×{height}" + (f"×{frames} frames" if frames > 1 else "")
        raise ImageDecodeError(
            f"image of {size} pixels exceeds the limit of {max_pixels:,} pixels"
        )


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
        raise ImageDecodeError(f"unreadable {fmt.upper()} header: {_short(exc)}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{fmt.upper()} image of {width}×{height} pixels has no pixels")
    _check_pixel_budget(width, height, 1, max_pixels)
    try:
        image.load()
    except Exception as exc:
        raise ImageDecodeError(f"corrupt or truncated {fmt.upper()} data: {_short(exc)}") from exc
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
    ds = _read_dataset(data, stop_before_pixels=False)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageDecodeError(f"DICOM without pixel data (SOP class {_sop_class(ds)})")
    header = _header_from_dataset(ds)
    rows, columns, frames = header.rows, header.columns, header.frames
    _check_pixel_budget(columns, rows, frames, max_pixels)

    samples = _int(ds, "SamplesPerPixel") or 1
    bits_allocated = _int(ds, "BitsAllocated")
    if samples not in (1, 3):
        raise ImageDecodeError(f"unsupported Samples per Pixel {samples} (expected 1 or 3)")
    if bits_allocated not in (1, 8, 16, 32, 64):
        raise ImageDecodeError(f"unsupported Bits Allocated {bits_allocated}")
    photometric = (_text(ds, "PhotometricInterpretation") or "").upper()
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        ds.PhotometricInterpretation = photometric

    index = frames // 2 if frame is None else frame
    if not 0 <= index < frames:
        raise ImageDecodeError(f"frame {frame} requested but the image has {frames} frame(s)")

    _ensure_transfer_syntax(ds)
    plugins = _check_decodable(ds, rows=rows, columns=columns, frames=frames, samples=samples)
    arr = _pixel_array(ds, index=index if frames > 1 else None, plugins=plugins)
    if arr.ndim == 3 and arr.shape[0] == 1 and samples == 1:
        arr = arr[0]
    expected = (rows, columns) if samples == 1 else (rows, columns, 3)
    if tuple(arr.shape) != expected:
        raise ImageDecodeError(
            f"decoded pixel array has shape {tuple(arr.shape)}, header says {expected}"
        )

    window_center = window_width = None
    window_source = None
    if samples == 3 or photometric == "PALETTE COLOR":
        pixels = _colour_to_display(arr, ds, photometric)
    else:
        values = _modality_values(arr, ds, index)
        pixels, window_center, window_width, window_source = _voi_to_display(
            values, arr, ds, index
        )
        if photometric == "MONOCHROME1":
            pixels = 255 - pixels
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
    )


def _pixel_array(ds, *, index: int | None, plugins: list[str]) -> np.ndarray:
    """Decode one frame, trying the allowed decoder plugins one after the other."""
    from pydicom.pixels import pixel_array

    reasons: list[str] = []
    for plugin in plugins or [""]:
        try:
            return pixel_array(ds, index=index, as_rgb=True, decoding_plugin=plugin)
        except Exception as exc:
            # pydicom lists one "  plugin: reason" line per plugin it tried.
            lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            reasons.extend(lines or [f"{plugin}: {_short(exc)}" if plugin else _short(exc)])
    raise ImageDecodeError(_pixel_failure(ds, reasons))


def _pixel_failure(ds, reasons: list[str]) -> str:
    """Name the transfer syntax, the bit depth and what each decoder plugin said."""
    try:
        from pydicom.uid import UID

        syntax = UID(str(ds.file_meta.TransferSyntaxUID)).name
    except Exception:
        syntax = "unknown transfer syntax"
    bits = _int(ds, "BitsStored")
    what = f"{bits}-bit {syntax}" if bits else syntax
    detail = "; ".join(reasons)
    if len(detail) > 400:
        detail = detail[:399] + "…"
    return f"corrupt pixel data, or not decodable by the installed plugins ({what}): {detail}"


def _ensure_transfer_syntax(ds) -> None:
    """Files without a file meta group get the transfer syntax they were parsed with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in meta and str(meta.TransferSyntaxUID).strip():
        return
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        raise ImageDecodeError("DICOM without a transfer syntax and of unknown encoding")
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


#: Decoder plugins never used in-process: python-gdcm aborts the whole process (an uncaught
#: C++ exception, SIGABRT) on some corrupt JPEG streams, which would kill a worker. Found
#: by the fuzz test; tests/imaging/test_fuzz.py keeps the crashing file as a regression.
UNSAFE_DECODER_PLUGINS = frozenset({"gdcm"})


def _check_decodable(ds, *, rows: int, columns: int, frames: int, samples: int) -> list[str]:
    """Refuse what cannot be decoded; return the decoder plugins to try, in order
    (empty for native transfer syntaxes, which pydicom reads itself)."""
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import get_expected_length
    from pydicom.uid import UID

    uid = UID(str(ds.file_meta.TransferSyntaxUID).strip())
    if not uid.is_transfer_syntax:
        raise ImageDecodeError(f"unknown transfer syntax {uid}")
    if not uid.is_compressed:
        if "PixelData" in ds:
            needed = get_expected_length(ds)
            have = len(ds.PixelData or b"")
            if have < needed:
                raise ImageDecodeError(
                    "truncated DICOM: pixel data shorter than Rows×Columns×frames needs "
                    f"({have:,} of {needed:,} bytes for {columns}×{rows}×{frames}"
                    f"{'×3' if samples == 3 else ''})"
                )
        return []
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise ImageDecodeError(
            f"unsupported transfer syntax {uid} ({uid.name}): pydicom has no decoder for it"
        ) from None
    plugins = [
        name
        for name in (decoder.available_plugins if decoder.is_available else ())
        if name not in UNSAFE_DECODER_PLUGINS
    ]
    if not plugins:
        missing = [
            reason
            for reason in decoder.missing_dependencies
            if reason.split(" ")[0] not in UNSAFE_DECODER_PLUGINS
        ]
        raise ImageDecodeError(
            f"unsupported transfer syntax {uid} ({uid.name}) and no decoder plugin installed"
            + (f" (one of: {'; '.join(missing)})" if missing else "")
        )
    _check_codestream_size(ds, rows=rows, columns=columns, frames=frames)
    return plugins


def _check_codestream_size(ds, *, rows: int, columns: int, frames: int) -> None:
    """A JPEG/JPEG 2000 frame whose own header is larger than Rows×Columns would make
    the codec allocate beyond the budget checked on the DICOM header: refuse it."""
    from pydicom.encaps import generate_fragmented_frames

    try:
        first = next(generate_fragmented_frames(ds.PixelData, number_of_frames=frames))
    except StopIteration:
        raise ImageDecodeError("compressed pixel data contains no frame") from None
    except Exception as exc:
        raise ImageDecodeError(f"corrupt encapsulated pixel data: {_short(exc)}") from exc
    head = b"".join(first[:4])[:65536]
    size = _codestream_size(head)
    if size is not None and (size[0] > columns or size[1] > rows):
        raise ImageDecodeError(
            f"compressed frame is {size[0]}×{size[1]} pixels but the header says "
            f"{columns}×{rows}"
        )


def _codestream_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG SOF or JPEG 2000 SIZ marker, None when not found."""
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) >= 24:  # J2K SOC + SIZ
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
        return xsiz - xosiz, ysiz - yosiz
    jp2 = head.find(b"\xff\x4f\xff\x51")
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" and jp2 >= 0:
        return _codestream_size(head[jp2:])
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC); JPEG-LS SOF55 is F7.
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            if pos + 9 <= len(head):
                height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
                return width, height
            return None
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def _functional_group_value(ds, index: int, sequence: str, keyword: str):
    """`keyword` from the per-frame, then shared functional groups (enhanced multi-frame
    objects), then the top level of the data set."""
    for groups_keyword, item_index in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        try:
            groups = ds.get(groups_keyword)
            if groups is None or item_index >= len(groups):
                continue
            inner = groups[item_index].get(sequence)
            if inner and keyword in inner[0]:
                return inner[0].get(keyword)
        except Exception:
            continue
    return ds.get(keyword)


def _first_number(value) -> float | None:
    if value is None:
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
            if len(value) == 0:
                return None
            value = value[0]
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _modality_values(arr: np.ndarray, ds, index: int) -> np.ndarray:
    """Stored values → modality values (e.g. Hounsfield units), as float32."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        try:
            return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        except Exception as exc:
            raise ImageDecodeError(f"invalid Modality LUT Sequence: {_short(exc)}") from exc
    slope = _first_number(
        _functional_group_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
    )
    intercept = _first_number(
        _functional_group_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    values = arr.astype(np.float32)
    if slope is not None and slope != 0 and slope != 1:
        values *= np.float32(slope)
    if intercept is not None and intercept != 0:
        values += np.float32(intercept)
    return values


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window into 0..255 (width ≥ 1)."""
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    if width <= 1:
        out = np.where(values <= lo, 0.0, 255.0)
    else:
        out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
        out = np.where(values <= lo, 0.0, np.where(values > hi, 255.0, out))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def window_linear_exact(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.2 LINEAR_EXACT window into 0..255 (width > 0)."""
    out = ((values - center) / width + 0.5) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def window_sigmoid(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.1 SIGMOID window into 0..255 (width > 0)."""
    exponent = np.clip(-4.0 * (values - center) / width, -80.0, 80.0)
    out = 255.0 / (1.0 + np.exp(exponent))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _voi_to_display(values: np.ndarray, stored: np.ndarray, ds, index: int):
    center = _first_number(_functional_group_value(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_number(_functional_group_value(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    function = str(
        _functional_group_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR"
    ).strip().upper()
    if center is not None and width is not None:
        if function == "SIGMOID" and width > 0:
            return window_sigmoid(values, center, width), center, width, "dicom"
        if function == "LINEAR_EXACT" and width > 0:
            return window_linear_exact(values, center, width), center, width, "dicom"
        if function not in ("SIGMOID", "LINEAR_EXACT") and width >= 1:
            return window_linear(values, center, width), center, width, "dicom"
    if "VOILUTSequence" in ds:
        lut_pixels = _apply_voi_lut_sequence(values, ds)
        if lut_pixels is not None:
            return lut_pixels, None, None, "dicom"
    center, width = fallback_window(values, _padding_mask(stored, ds))
    return window_linear_exact(values, center, width), center, width, "fallback"


def _apply_voi_lut_sequence(values: np.ndarray, ds) -> np.ndarray | None:
    from pydicom.pixels import apply_voi_lut

    try:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True)
        top = float(2**bits - 1) if 1 <= bits <= 16 else float(np.max(out) or 1)
        return np.clip(np.rint(np.asarray(out, dtype=np.float64) * (255.0 / top)), 0, 255).astype(
            np.uint8
        )
    except Exception:
        return None


def _padding_mask(stored: np.ndarray, ds) -> np.ndarray | None:
    """True where a pixel is real data, False for Pixel Padding Value (range) pixels."""
    pad = _first_number(ds.get("PixelPaddingValue"))
    if pad is None:
        return None
    limit = _first_number(ds.get("PixelPaddingRangeLimit"))
    if limit is None:
        return stored != pad
    lo, hi = min(pad, limit), max(pad, limit)
    return ~((stored >= lo) & (stored <= hi))


def fallback_window(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(center, width) covering the 0.5-99.5 percentile range of the values."""
    sample = values[mask] if mask is not None and np.any(mask) else values.reshape(-1)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    step = max(1, sample.size // 1_000_000)
    lo, hi = np.percentile(sample[::step], [0.5, 99.5])
    lo, hi = float(lo), float(hi)
    if hi - lo < 1e-6:
        return lo, 1.0
    return (lo + hi) / 2, hi - lo


def _colour_to_display(arr: np.ndarray, ds, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageDecodeError(f"invalid Palette Color lookup table: {_short(exc)}") from exc
        top = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else float(rgb.max() or 1)
        if rgb.dtype == np.uint16 and rgb.max() <= 255:
            top = 255.0
        return np.clip(np.rint(rgb.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if arr.dtype == np.uint8:
        return arr
    bits = _int(ds, "BitsStored") or (arr.dtype.itemsize * 8)
    top = float(2 ** min(bits, 32) - 1)
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- de-identification

# DICOM PS3.15 Annex E Table E.1-1, Basic Application Level Confidentiality Profile with
# the Retain UIDs option (the platform groups series by UID; UIDs carry no identity when
# issued by a root, and the caller keeps them only inside the platform) and the Retain
# Patient Characteristics option (sex, age, size and weight are study covariates: paper
# 000 classifies NLST CT by weight).

#: Attributes emptied (kept as zero-length, as the profile's "Z" for Type 2 attributes).
BLANKED_KEYWORDS: tuple[str, ...] = (
    "PatientBirthDate",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ContentCreatorName",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)

#: Attributes removed wherever they occur, including inside sequences.
REMOVED_KEYWORDS: tuple[str, ...] = (
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "AcquisitionDeviceProcessingDescription",
    "AcquisitionProtocolDescription",
    "AcquisitionTime",
    "ActualHumanPerformersSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDate",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingTime",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CassetteID",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorIdentificationCodeSequence",
    "ContentDate",
    "ContentTime",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CurveDate",
    "CurveTime",
    "CustodialOrganizationSequence",
    "DataSetTrailingPadding",
    "DerivationDescription",
    "DetectorID",
    "DeviceSerialNumber",
    "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription",
    "DistributionAddress",
    "DistributionName",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "GeneratorID",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "Impressions",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "IssuerOfServiceEpisodeID",
    "LastMenstrualDate",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "ModifiedImageDescription",
    "ModifyingDeviceID",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "OverlayDate",
    "OverlayTime",
    "ParticipantSequence",
    "PatientAddress",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence",
    "PatientReligiousPreference",
    "PatientState",
    "PatientTelecomInformation",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PlateID",
    "PreMedication",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "ReasonForTheImagingServiceRequest",
    "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ReviewerName",
    "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "SeriesDate",
    "SeriesDescription",
    "SeriesTime",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyIDIssuer",
    "TextComments",
    "TextString",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
)

#: File meta elements naming the sending system.
_REMOVED_META_KEYWORDS = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
)

DEIDENTIFICATION_METHOD = (
    "DICOM PS3.15 E.1 Basic Profile",
    "Retain UIDs and Patient Characteristics",
    "Private tags, curves, overlays removed",
)

# CID 7050 De-identification Method codes.
_DEID_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113110", "Retain UIDs Option"),
)


def deidentify_dicom(data: bytes, *, pseudo_id: str) -> bytes:
    """The DICOM with identifying attributes removed or blanked and Patient ID/Name set to
    `pseudo_id`; private tags, curves and overlays removed; pixel data byte-identical.

    Burned-in text in the pixels is not touched (check Burned In Annotation upstream).
    """
    pseudo_id = _check_pseudo_id(pseudo_id)
    ds = _read_dataset(data, stop_before_pixels=False)
    try:
        return _deidentify_dataset(ds, pseudo_id)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot de-identify this DICOM: {_short(exc)}") from exc


def _check_pseudo_id(pseudo_id: str) -> str:
    if not isinstance(pseudo_id, str) or not pseudo_id.strip():
        raise ValueError("pseudo_id must be a non-empty string")
    pseudo_id = pseudo_id.strip()
    if len(pseudo_id) > 64 or "\\" in pseudo_id or any(ord(c) < 32 for c in pseudo_id):
        raise ValueError(
            "pseudo_id must be at most 64 characters without backslashes or control characters"
        )
    return pseudo_id


def _deidentify_dataset(ds, pseudo_id: str) -> bytes:
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    _ensure_transfer_syntax(ds)
    removed_tags = {tag_for_keyword(k) for k in REMOVED_KEYWORDS} - {None}
    blanked_tags = {tag_for_keyword(k) for k in BLANKED_KEYWORDS} - {None}
    # Inside sequences a patient's name or ID has no pseudonym to take: remove it.
    nested_removed = removed_tags | {tag_for_keyword("PatientName"), tag_for_keyword("PatientID")}

    def clean(dataset, nested: bool) -> None:
        for elem in list(dataset):
            tag = elem.tag
            group = tag >> 16
            if (
                tag in (nested_removed if nested else removed_tags)
                or 0x5000 <= group <= 0x50FF  # curves
                or 0x6000 <= group <= 0x60FF  # overlays (may carry burned-in text)
            ):
                del dataset[tag]
                continue
            if tag in blanked_tags:
                elem.value = None if elem.VR == "SQ" else ""
                continue
            if elem.VR == "SQ" and elem.value:
                for item in elem.value:
                    clean(item, nested=True)

    ds.remove_private_tags()
    clean(ds, nested=False)
    ds.PatientName = pseudo_id
    ds.PatientID = pseudo_id
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    codes = []
    for value, meaning in _DEID_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.LongitudinalTemporalInformationModified = "REMOVED"

    meta = ds.file_meta
    for keyword in _REMOVED_META_KEYWORDS:
        if keyword in meta:
            delattr(meta, keyword)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


# --------------------------------------------------------------------------- renditions


def _as_pillow(pixels: np.ndarray) -> Image.Image:
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), mode="L")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    raise ValueError(f"pixels must be H×W or H×W×3, got shape {arr.shape}")


def make_rendition(
    pixels: np.ndarray, *, max_side: int = 1024, fmt: Literal["PNG", "WEBP", "JPEG"] = "PNG"
) -> bytes:
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


def make_thumbnail(
    pixels: np.ndarray, *, max_side: int = 256, fmt: Literal["PNG", "WEBP", "JPEG"] = "PNG"
) -> bytes:
    """A small rendition for grids and lists (long side ≤ `max_side`)."""
    return make_rendition(pixels, max_side=max_side, fmt=fmt)
