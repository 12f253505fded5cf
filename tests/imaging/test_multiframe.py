"""Multi-frame DICOM shows the middle frame unless a frame is asked for."""

import numpy as np
import pytest
from pydicom.pixels import pixel_array

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import sample_bytes, sample_dataset


def test_colour_cine_shows_its_middle_frame():
    image = decode_image(sample_bytes("examples_ybr_color.dcm"))  # 30 frames, YBR JPEG
    assert (image.frames, image.frame_index) == (30, 15)
    # the same decoder as decode_image's first choice (JPEG decoders differ by a few levels)
    expected = pixel_array(sample_dataset("examples_ybr_color.dcm"), index=15, decoding_plugin="pillow")
    assert image.pixels.shape == (240, 320, 3)
    assert np.array_equal(image.pixels, expected)


def test_requested_frame_is_shown():
    image = decode_image(sample_bytes("examples_ybr_color.dcm"), frame=3)
    expected = pixel_array(sample_dataset("examples_ybr_color.dcm"), index=3, decoding_plugin="pillow")
    assert image.frame_index == 3
    assert np.array_equal(image.pixels, expected)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the sample has invalid VRs
def test_greyscale_multiframe_middle_frame():
    data = sample_bytes("rtdose.dcm")  # 15 frames
    middle = decode_image(data)
    assert (middle.frames, middle.frame_index) == (15, 7)
    assert middle.pixels.shape == (10, 10)
    assert not np.array_equal(middle.pixels, decode_image(data, frame=0).pixels)


@pytest.mark.parametrize("frame", [30, -1])
def test_frame_out_of_range_is_a_decode_error(frame):
    with pytest.raises(ImageDecodeError, match="30 frame"):
        decode_image(sample_bytes("examples_ybr_color.dcm"), frame=frame)


def test_rle_two_frame_rgb():
    image = decode_image(sample_bytes("SC_rgb_rle_2frame.dcm"))
    assert (image.frames, image.frame_index) == (2, 1)
    assert image.pixels.shape == (100, 100, 3)
