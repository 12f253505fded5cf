"""Compressed transfer syntaxes decode through the pylibjpeg plugins (and pydicom's RLE)."""

import numpy as np
import pytest

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import dataset_bytes, sample_bytes, sample_dataset


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",  # RLE Lossless
        "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "MR_small_bigendian.dcm",  # explicit big endian
        "MR_small_implicit.dcm",  # implicit little endian
    ],
)
def test_lossless_encodings_give_the_same_pixels_as_the_native_file(name):
    reference = decode_image(sample_bytes("MR_small.dcm")).pixels
    assert np.array_equal(decode_image(sample_bytes(name)).pixels, reference)


def test_jpeg_lossless_rgb_equals_rle_rgb():
    reference = decode_image(sample_bytes("SC_rgb_rle.dcm")).pixels
    assert np.array_equal(decode_image(sample_bytes("SC_rgb_jpeg_gdcm.dcm")).pixels, reference)


def test_jpeg_baseline_ybr_is_converted_to_rgb_close_to_the_lossless_original():
    reference = decode_image(sample_bytes("SC_rgb_rle.dcm")).pixels.astype(int)
    image = decode_image(sample_bytes("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG baseline, YBR_FULL
    assert image.photometric == "YBR_FULL"
    assert image.pixels.shape == (100, 100, 3)
    assert np.abs(image.pixels.astype(int) - reference).mean() < 2


def test_jpeg_extended_12_bit_and_jpeg_2000_show_the_same_image():
    extended = decode_image(sample_bytes("JPGExtended.dcm")).pixels.astype(float)
    j2k = decode_image(sample_bytes("JPEG2000.dcm")).pixels.astype(float)
    assert extended.shape == j2k.shape == (1024, 256)
    assert np.corrcoef(extended.ravel(), j2k.ravel())[0, 1] > 0.9


def test_codestream_larger_than_the_header_is_refused():
    # This sample's codestream claims ~3.7e9 × 1024 pixels for a 256 × 1024 header.
    with pytest.raises(ImageDecodeError, match="compressed frame is"):
        decode_image(sample_bytes("JPEG2000-embedded-sequence-delimiter.dcm"))


def test_transfer_syntax_without_any_decoder_is_named():
    ds = sample_dataset("MR_small_RLE.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile
    with pytest.raises(ImageDecodeError, match=r"unsupported transfer syntax 1\.2\.840\.10008\.1\.2\.4\.100"):
        decode_image(dataset_bytes(ds))


def test_missing_plugin_is_named(monkeypatch):
    import pydicom.pixels

    class Unavailable:
        is_available = False
        available_plugins = ()
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(ImageDecodeError, match="no decoder plugin installed.*pylibjpeg-openjpeg"):
        decode_image(sample_bytes("MR_small_jp2klossless.dcm"))


def test_corrupt_jpeg_stream_is_a_decode_error():
    from pydicom.encaps import encapsulate

    ds = sample_dataset("SC_rgb_jpeg_dcmtk.dcm")
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + bytes(200)])
    with pytest.raises(ImageDecodeError, match="corrupt pixel data"):
        decode_image(dataset_bytes(ds))


def test_gdcm_alone_is_not_used(monkeypatch):
    import pydicom.pixels

    class OnlyGdcm:
        is_available = True
        available_plugins = ("gdcm",)
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: OnlyGdcm())
    with pytest.raises(ImageDecodeError, match="no decoder plugin installed.*pylibjpeg-libjpeg"):
        decode_image(sample_bytes("SC_rgb_jpeg_dcmtk.dcm"))
