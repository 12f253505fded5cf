"""MONOCHROME1 images are inverted after windowing, so air is dark on screen."""

import numpy as np

from retrieval.imports.imaging.decode import decode_image

from .samples import MONOCHROME1, dataset_bytes, sample_bytes, sample_dataset


def test_monochrome1_is_the_inverse_of_the_same_data_read_as_monochrome2():
    as_stored = decode_image(sample_bytes(MONOCHROME1))
    ds = sample_dataset(MONOCHROME1)
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_monochrome2 = decode_image(dataset_bytes(ds))
    assert as_stored.photometric == "MONOCHROME1"
    assert np.array_equal(as_stored.pixels, 255 - as_monochrome2.pixels)
    assert as_stored.window_source == "dicom"


def test_highest_stored_value_is_darkest():
    ds = sample_dataset(MONOCHROME1)
    stored = ds.pixel_array
    image = decode_image(sample_bytes(MONOCHROME1))
    brightest_stored = np.unravel_index(np.argmax(stored), stored.shape)
    darkest_stored = np.unravel_index(np.argmin(stored), stored.shape)
    assert image.pixels[brightest_stored] < image.pixels[darkest_stored]
