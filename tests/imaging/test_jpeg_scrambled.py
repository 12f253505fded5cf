"""Issue 15, point 7: JPEG data inside a DICOM scrambled so that both installed decoders (pylibjpeg's libjpeg and
Pillow) decode it without an error or a warning is refused: libjpeg-turbo (simplejpeg) entropy-decodes the frame
with its corrupt-data warnings as errors."""

import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels import pixel_array

from retrieval.imports.imaging import pixeldata
from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError
from tests.imports_corpus.build import _dataset, _save, jpeg_dicom, scrambled_silently


def _frame(ds) -> bytes:
    return b"".join(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1)))


def test_both_decoders_accept_the_scrambled_frame_silently():
    """The premise: without the libjpeg-turbo check the frame decodes, warning-free, in both plugins."""
    import warnings

    ds = _dataset("SC_rgb_jpeg_dcmtk.dcm")
    ds.PixelData = encapsulate([scrambled_silently(_frame(ds))])
    for plugin in ("pylibjpeg", "pillow"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert pixel_array(ds, decoding_plugin=plugin).shape == (100, 100, 3)


def test_a_silently_scrambled_jpeg_frame_is_refused():
    with pytest.raises(ImageDecodeError, match="corrupt pixel data: JPEG data of the frame: .*premature end"):
        decode_image(jpeg_dicom("scrambled silently"))


def test_without_the_check_it_would_be_stored(monkeypatch):
    """The check is what refuses it (this test fails if the decoders start refusing it themselves: then the
    check, and the limits documented in docs/importing.md, should be revisited)."""
    monkeypatch.setattr(pixeldata, "_libjpeg_turbo_check", lambda frame, where: None)
    assert decode_image(jpeg_dicom("scrambled silently")).pixels.size


def test_intact_baseline_frames_pass_the_check():
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "JPEG-lossy.dcm"):
        frame = _frame(_dataset(name))
        if pixeldata._libjpeg_turbo_reads(frame[:65536]):  # JPEG-lossy.dcm is 12-bit: not libjpeg-turbo's
            pixeldata._libjpeg_turbo_check(frame, "the frame")
    assert pixeldata._libjpeg_turbo_reads(_frame(_dataset("SC_rgb_jpeg_dcmtk.dcm")))
    assert not pixeldata._libjpeg_turbo_reads(_frame(_dataset("JPEG-lossy.dcm")))
    decode_image(_save(_dataset("SC_rgb_jpeg_dcmtk.dcm")))


def test_extraneous_bytes_before_the_end_are_refused():
    """Decoding that ends before the data does (the Huffman decoding desynchronised the other way)."""
    ds = _dataset("SC_rgb_jpeg_dcmtk.dcm")
    frame = _frame(ds)
    eoi = frame.rindex(b"\xff\xd9")
    padded = frame[:eoi] + np.full(64, 0x55, np.uint8).tobytes() + frame[eoi:]
    with pytest.raises(ImageDecodeError, match="extraneous bytes"):
        pixeldata._libjpeg_turbo_check(padded, "the frame")
