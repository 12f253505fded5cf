"""Format sniffing is strict: random or text bytes are not images."""

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError
from retrieval.imports.imaging.sniff import sniff_format

from .samples import sample_bytes, sample_dataset


def png(mode="L"):
    out = io.BytesIO()
    Image.new(mode, (8, 4)).save(out, "PNG")
    return out.getvalue()


def test_known_formats():
    assert sniff_format(png()) == "png"
    out = io.BytesIO()
    Image.new("L", (8, 4)).save(out, "JPEG")
    assert sniff_format(out.getvalue()) == "jpeg"
    assert sniff_format(sample_bytes("CT_small.dcm")) == "dicom"


def test_dicom_without_preamble_is_recognised_and_decodes():
    with_meta = sample_bytes("MR_small.dcm")[132:]  # starts at the (0002,xxxx) file meta
    assert sniff_format(with_meta) == "dicom"
    ds = sample_dataset("MR_small.dcm")
    raw = DicomBytesIO()
    raw.is_little_endian, raw.is_implicit_VR = True, True
    write_dataset(raw, ds)  # bare implicit-VR data set, no meta, no preamble
    assert sniff_format(raw.getvalue()) == "dicom"
    reference = decode_image(sample_bytes("MR_small.dcm")).pixels
    assert np.array_equal(decode_image(with_meta).pixels, reference)
    assert np.array_equal(decode_image(raw.getvalue()).pixels, reference)


@pytest.mark.filterwarnings("ignore")
def test_random_bytes_are_never_dicom_even_with_a_plausible_first_tag():
    rng = np.random.default_rng(1)
    for _ in range(300):
        data = rng.integers(0, 256, int(rng.integers(16, 4096)), dtype=np.uint8).tobytes()
        assert sniff_format(data) is None
        assert sniff_format(b"\x08\x00\x05\x00" + data) is None
        assert sniff_format(b"\x02\x00\x00\x00" + data) is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"patient,label\nx,1\n", "not a DICOM, PNG or JPEG file"),
        (b"%PDF-1.7\n" + bytes(300), "PDF document is not supported"),
        (b"\x1f\x8b\x08\x00" + bytes(300), "gzip archive is not supported"),
        (b"II*\x00" + bytes(300), "TIFF image is not supported"),
        (b"\x89PNG\r\n\x1a\n", "unreadable PNG"),
        (b"\xff\xd8\xff\xe0" + bytes(20), "unreadable JPEG"),
    ],
)
def test_non_images_raise_a_precise_decode_error(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_dicom_without_pixels_says_so():
    with pytest.raises(ImageDecodeError, match="DICOM without pixel data"):
        decode_image(sample_bytes("rtplan.dcm"))
    with pytest.raises(ImageDecodeError, match="DICOM data set without an image"):
        decode_image(sample_bytes("ExplVR_LitEndNoMeta.dcm"))


def test_truncated_pixel_data_is_named():
    expected = "truncated DICOM: pixel data shorter than Rows×Columns×frames needs"
    with pytest.raises(ImageDecodeError, match=expected):
        decode_image(sample_bytes("MR_truncated.dcm"))


def test_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)
