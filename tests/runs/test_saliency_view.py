"""The grey image under a saliency overlay is the view the network was given (non-square images too)."""

import numpy as np
import pytest
from PIL import Image as PILImage

pytestmark = pytest.mark.ml


@pytest.mark.parametrize("size", [(120, 60), (50, 90), (80, 80)])
def test_overlay_background_is_the_network_input(size):
    from retrieval.ml.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform
    from retrieval.runs.stages import _network_view

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    pil = PILImage.fromarray(((xx * 3 + yy * 5) % 256).astype(np.uint8))
    seen = build_transform({"interpolation": "bicubic"}, resize=72, crop=64)(pil)[0].numpy()
    seen = (seen * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
    view = _network_view(pil, 72, 64).astype(float)
    assert view.shape == seen.shape == (64, 64)
    assert np.abs(view - seen).mean() < 3  # same geometry; only rounding / resampling details differ
