"""Truncated and bit-flipped files only ever raise ImageDecodeError."""

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval.imports.imaging.decode import DecodedImage, decode_image
from retrieval.imports.imaging.deid import deidentify_dicom
from retrieval.imports.imaging.dicom import read_dicom_header
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import sample_bytes

DICOM_SAMPLES = (
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_palette.dcm",
    "rtdose.dcm",
)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # truncation
        return bytes(buf[: rng.integers(0, len(buf))])
    if kind == 1:  # bit flips anywhere
        for _ in range(rng.integers(1, 20)):
            pos = rng.integers(0, len(buf))
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == 2:  # a random run of bytes
        pos, n = rng.integers(0, len(buf)), rng.integers(1, 16)
        buf[pos : pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:  # bytes in the header region, where lengths and VRs live
        for _ in range(rng.integers(1, 6)):
            buf[rng.integers(0, min(len(buf), 1500))] = int(rng.integers(256))
    return bytes(buf)


def outcome(call, data):
    """ "ok" or "error"; anything but ImageDecodeError propagates and fails the test."""
    try:
        result = call(data)
    except ImageDecodeError as exc:
        assert str(exc), "decode errors carry a message"
        return "error"
    if isinstance(result, DecodedImage):
        assert result.pixels.dtype == np.uint8
        assert result.pixels.shape[:2] == (result.height, result.width)
    return "ok"


@pytest.mark.filterwarnings("ignore")
def test_dicom_mutations_only_raise_image_decode_error():
    rng = np.random.default_rng(20240601)
    samples = [sample_bytes(name) for name in DICOM_SAMPLES]
    calls = (decode_image, read_dicom_header, lambda b: deidentify_dicom(b, pseudo_id="FUZZ"))
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(300):
            data = mutate(samples[i % len(samples)], rng)
            for call in calls:
                seen.add(outcome(call, data))
    assert seen == {"ok", "error"}  # the mutations exercise both paths


def test_png_and_jpeg_mutations_only_raise_image_decode_error():
    rng = np.random.default_rng(7)
    pixels = (np.add.outer(np.arange(64), np.arange(48)) % 256).astype(np.uint8)
    samples = []
    for fmt in ("PNG", "JPEG"):
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, fmt)
        samples.append(out.getvalue())
    seen = set()
    for i in range(150):
        seen.add(outcome(decode_image, mutate(samples[i % 2], rng)))
    assert "error" in seen


def test_corrupt_jpeg_that_aborts_gdcm_is_a_clean_error(tmp_path):
    """A mutation found by fuzzing: python-gdcm raises an uncaught C++ exception on it and
    aborts the interpreter, so it runs in a child process; there it must only raise
    ImageDecodeError (gdcm is never used in-process)."""
    data = bytearray(sample_bytes("SC_rgb_jpeg_dcmtk.dcm"))
    data[1709:1723] = bytes.fromhex("7e0323d9839d56b498f523a5257e")
    case = tmp_path / "case.dcm"
    case.write_bytes(bytes(data))
    script = (
        "import sys, pathlib\n"
        "from retrieval.imports.imaging.decode import decode_image\n"
        "from retrieval.imports.imaging.errors import ImageDecodeError\n"
        "try:\n"
        "    decode_image(pathlib.Path(sys.argv[1]).read_bytes())\n"
        "except ImageDecodeError as exc:\n"
        "    print('ImageDecodeError:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(case)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-500:]
