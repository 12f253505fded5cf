"""pydicom's bundled sample files as paths, bytes and data sets."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pydicom.data

SAMPLES_DIR = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent

#: Real single-frame CT series shipped by pydicom (16×16 pixels, 5 slices).
CT5N_SERIES = ("2062", "2392", "2693", "3023", "3353")
#: The MONOCHROME1 computed radiograph sample.
MONOCHROME1 = "dicomdirtests/77654033/CR1/6154"


def sample_path(name: str) -> Path:
    """A bundled sample by file name, or by path under pydicom's test_files folder."""
    path = SAMPLES_DIR / name
    if path.exists():
        return path
    return Path(pydicom.data.get_testdata_file(name))


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


def sample_dataset(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(sample_path(name))


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
