"""The DICOM header: identity, geometry, frames and slice position, read without decoding pixels.

Also the small readers of header elements (text, integer, SOP class) that the pixel decoding,
windowing and de-identification modules share, and the transfer syntax a file without a file
meta group was parsed with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from retrieval.imports.imaging.errors import ImageDecodeError, short_reason
from retrieval.imports.imaging.sniff import dcmread_bytes, looks_like_raw_dicom

#: Deepest sequence nesting accepted (an image's header nests a few levels; pydicom's writer recurses per level
#: and, past Python's recursion limit, re-raises ever-growing messages until memory runs out).
MAX_SEQUENCE_DEPTH = 32
#: Most data elements accepted in one file, sequence items included.
MAX_ELEMENTS = 100_000


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


def read_dataset(data: bytes, *, stop_before_pixels: bool):
    """Parse DICOM bytes or raise ImageDecodeError (never another exception type)."""
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not looks_like_raw_dicom(data):
        raise ImageDecodeError("not a DICOM file (no 'DICM' marker at byte 128 and no DICOM data set at the start)")
    try:
        ds = dcmread_bytes(data, stop_before_pixels=stop_before_pixels)
        # pydicom parses lazily: touch every top-level element now, so that a corrupt
        # element raises here and not somewhere in the caller.
        check_structure(ds)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"unreadable DICOM: {short_reason(exc)}") from exc
    if len(ds) == 0:
        raise ImageDecodeError("unreadable DICOM: no data elements found")
    return ds


def check_structure(ds, *, max_depth: int = MAX_SEQUENCE_DEPTH, max_elements: int = MAX_ELEMENTS) -> None:
    """Refuse a data set nested deeper than `max_depth` sequences or holding more than `max_elements`
    elements, before anything recurses into it. Walks with an explicit stack (no recursion), touching every
    element, so that a corrupt one raises here and not in the caller."""
    stack = [(ds, 0)]
    count = 0
    while stack:
        dataset, depth = stack.pop()
        for elem in dataset:
            count += 1
            if count > max_elements:
                raise ImageDecodeError(f"DICOM with more than {max_elements:,} data elements: refused")
            if elem.VR == "SQ" and elem.value:
                if depth + 1 > max_depth:
                    raise ImageDecodeError(f"DICOM sequences nested more than {max_depth} deep: refused")
                stack.extend((item, depth + 1) for item in elem.value)


def element_text(ds, keyword: str) -> str | None:
    """The (first) value of `keyword` as stripped text; None when absent, empty or unreadable."""
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


def element_int(ds, keyword: str) -> int | None:
    """The (first) value of `keyword` as an integer; None when absent or not a number."""
    text = element_text(ds, keyword)
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
    text = element_text(ds, "SliceLocation")
    if text is not None:
        try:
            value = float(text)
            if math.isfinite(value):
                return value
        except ValueError:
            pass
    number = element_int(ds, "InstanceNumber")
    return float(number) if number is not None else None


def sop_class_name(ds) -> str:
    """The SOP Class UID with its name, for messages."""
    uid = element_text(ds, "SOPClassUID")
    if uid is None:
        return "not given"
    try:
        name = UID(uid).name
    except Exception:
        return uid
    return f"{uid}, {name}" if name and name != uid else uid


def _frames(ds) -> int:
    if "NumberOfFrames" not in ds:
        return 1
    raw = element_text(ds, "NumberOfFrames")
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
    rows, columns = element_int(ds, "Rows"), element_int(ds, "Columns")
    if rows is None or columns is None:
        raise ImageDecodeError(f"DICOM without an image (no Rows/Columns; SOP class {sop_class_name(ds)})")
    if rows < 1 or columns < 1:
        raise ImageDecodeError(f"DICOM image of {columns}×{rows} pixels has no pixels")
    return rows, columns


def header_from_dataset(ds) -> DicomHeader:
    rows, columns = _dimensions(ds)
    return DicomHeader(
        sop_instance_uid=element_text(ds, "SOPInstanceUID"),
        study_uid=element_text(ds, "StudyInstanceUID"),
        series_uid=element_text(ds, "SeriesInstanceUID"),
        modality=element_text(ds, "Modality"),
        view_position=element_text(ds, "ViewPosition"),
        rows=rows,
        columns=columns,
        frames=_frames(ds),
        instance_number=element_int(ds, "InstanceNumber"),
        slice_position=_slice_position(ds),
        patient_id=element_text(ds, "PatientID"),
    )


def read_dicom_header(data: bytes) -> DicomHeader:
    """The identifying and geometric header of a DICOM image, without reading pixels."""
    ds = read_dataset(data, stop_before_pixels=True)
    try:
        return header_from_dataset(ds)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"unreadable DICOM header: {short_reason(exc)}") from exc


def ensure_transfer_syntax(ds) -> None:
    """Files without a file meta group get the transfer syntax they were parsed with."""
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
