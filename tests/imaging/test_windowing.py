"""VOI windowing of CT_small: the file's window by the PS3.3 formula, else the fallback."""

import numpy as np
import pytest

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.windowing import fallback_window

from .samples import dataset_bytes


def hand_linear(x: float, c: float, w: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1, written out as in the standard, into 0..255."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0
    if x > c - 0.5 + (w - 1) / 2:
        return 255
    return int(np.rint(((x - (c - 0.5)) / (w - 1) + 0.5) * 255))


def hounsfield(ds) -> np.ndarray:
    return ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_file_window_matches_the_linear_formula_by_hand(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = "40", "400"
    image = decode_image(dataset_bytes(ct_small))
    hu = hounsfield(ct_small)
    ramp = np.argwhere((hu > -160) & (hu < 239))
    below, above = np.argwhere(hu <= -160)[0], np.argwhere(hu >= 240)[0]
    picks = [tuple(p) for p in ramp[:: max(1, len(ramp) // 7)][:7]] + [tuple(below), tuple(above)]
    for r, c in picks:
        assert image.pixels[r, c] == hand_linear(hu[r, c], 40, 400), (r, c, hu[r, c])
    assert (image.window_center, image.window_width, image.window_source) == (40.0, 400.0, "dicom")


def test_whole_image_matches_the_hand_formula(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = "-600", "1500"
    image = decode_image(dataset_bytes(ct_small))
    expected = np.vectorize(hand_linear)(hounsfield(ct_small), -600.0, 1500.0)
    assert np.array_equal(image.pixels, expected.astype(np.uint8))


def test_first_window_pair_is_used_when_there_are_several(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = ["40", "-600"], ["400", "1500"]
    image = decode_image(dataset_bytes(ct_small))
    assert (image.window_center, image.window_width) == (40.0, 400.0)


def test_window_applies_to_rescaled_values(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = "40", "400"
    in_hu = decode_image(dataset_bytes(ct_small)).pixels
    ct_small.RescaleIntercept = "0"
    ct_small.WindowCenter = "1064"  # the same window in stored values
    in_stored = decode_image(dataset_bytes(ct_small)).pixels
    assert np.array_equal(in_hu, in_stored)


def test_linear_exact_and_sigmoid_functions(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = "40", "400"
    hu = hounsfield(ct_small)
    ct_small.VOILUTFunction = "LINEAR_EXACT"
    exact = decode_image(dataset_bytes(ct_small)).pixels
    expected = np.clip(np.rint(((hu - 40) / 400 + 0.5) * 255), 0, 255)
    assert np.array_equal(exact, expected.astype(np.uint8))
    ct_small.VOILUTFunction = "SIGMOID"
    sigmoid = decode_image(dataset_bytes(ct_small)).pixels
    expected = np.rint(255 / (1 + np.exp(-4 * (hu - 40) / 400)))
    assert np.abs(sigmoid.astype(int) - expected).max() <= 1


def test_without_window_the_percentile_fallback_is_used_and_recorded(ct_small):
    image = decode_image(dataset_bytes(ct_small))
    assert image.window_source == "fallback"
    stored = ct_small.pixel_array
    hu = hounsfield(ct_small)[stored != -2000]  # Pixel Padding Value excluded
    lo, hi = np.percentile(hu, [0.5, 99.5])
    assert image.window_center == pytest.approx((lo + hi) / 2)
    assert image.window_width == pytest.approx(hi - lo)
    assert image.pixels.min() == 0 and image.pixels.max() == 255


def test_invalid_window_falls_back(ct_small):
    ct_small.WindowCenter, ct_small.WindowWidth = "40", "0"
    assert decode_image(dataset_bytes(ct_small)).window_source == "fallback"


def test_fallback_window_of_a_constant_image_is_valid():
    center, width = fallback_window(np.full((4, 4), 7.0, dtype=np.float32))
    assert center == 7.0 and width > 0


def test_mr_uses_its_own_window():
    from .samples import sample_bytes

    image = decode_image(sample_bytes("MR_small.dcm"))
    assert (image.window_center, image.window_width, image.window_source) == (600.0, 1600.0, "dicom")
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (64, 64)
