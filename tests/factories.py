"""Small test data made on the fly: PNGs, zips, DICOMs derived from pydicom's samples."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage


def png_bytes(seed: int, size: int = 64, mode: str = "L") -> bytes:
    """A unique greyscale (or RGB) PNG."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr, mode=None).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def dicom_sample(name: str = "CT_small.dcm") -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name)).read_bytes()


def dicom_with(name: str = "CT_small.dcm", **tags) -> bytes:
    """A pydicom sample with some tags changed (e.g. a new SOPInstanceUID, a patient name)."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    for key, value in tags.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def csv_bytes(rows: list[list[str]]) -> bytes:
    import csv

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()
