"""retrieval.ml.transforms: greyscale → 3 channels, resize → centre crop, normalisation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.ml.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform, dataset_mean_std, to_rgb

pytestmark = pytest.mark.ml


@pytest.mark.parametrize(
    "image",
    [
        np.full((300, 280), 128, np.uint8),
        np.full((300, 280, 1), 128, np.uint8),
        np.full((300, 280, 3), 128, np.uint8),
        Image.fromarray(np.full((300, 280), 128, np.uint8)),
        Image.fromarray(np.full((300, 280), 128, np.uint8)).convert("RGB"),
    ],
)
def test_inputs_become_normalised_3_channel_crops(image):
    tensor = build_transform()(image)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(tensor.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)


def test_greyscale_copied_to_identical_channels():
    image = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    tensor = build_transform(crop=48, mean=(0.5,), std=(0.25,))(image)
    assert tensor.shape == (3, 48, 48)
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])


def test_sizes_and_statistics_from_data_config():
    config = {"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic"}
    transform = build_transform(config)
    resize = next(t for t in transform.transforms if type(t).__name__ == "Resize")
    assert resize.size == (73, 73)  # 64 · 256/224, the papers' resize-to-crop ratio
    tensor = transform(np.full((100, 100), 255, np.uint8))
    assert tensor.shape == (3, 64, 64) and torch.allclose(tensor, torch.ones_like(tensor))


def test_explicit_sizes_override_config():
    transform = build_transform({"input_size": (3, 64, 64)}, resize=40, crop=32)
    assert transform(np.zeros((50, 70), np.uint8)).shape == (3, 32, 32)


def test_training_transform_flips_and_rotates_only_in_train_mode():
    image = np.zeros((64, 64), np.uint8)
    image[:, :16] = 255  # bright left band
    torch.manual_seed(0)
    train = build_transform(crop=56, train=True)
    outputs = torch.stack([train(image) for _ in range(30)])
    left = outputs[:, 0, :, :10].mean(dim=(1, 2))
    assert (left > 0.5).any() and (left < 0).any()  # some flipped, some not
    evaluation = build_transform(crop=56)
    assert torch.equal(evaluation(image), evaluation(image))


def test_16_bit_images_rescaled_and_float_arrays_refused():
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    rgb = to_rgb(Image.fromarray(ramp))
    assert rgb.mode == "RGB" and np.asarray(rgb).max() == 255 and np.asarray(rgb).min() == 0
    with pytest.raises(TypeError):
        to_rgb(np.zeros((8, 8), np.float32))


def test_dataset_mean_std():
    images = [np.zeros((10, 10), np.uint8), np.full((10, 10), 255, np.uint8)]
    mean, std = dataset_mean_std(images, size=8)
    assert mean == pytest.approx((0.5, 0.5, 0.5)) and std == pytest.approx((0.5, 0.5, 0.5))


def test_greyscale_path_equals_rgb_path():
    image = np.random.default_rng(1).integers(0, 256, (90, 70), dtype=np.uint8)
    transform = build_transform(crop=48)
    grey = transform(Image.fromarray(image))  # stays single-channel until after ToTensor
    rgb = transform(Image.fromarray(image).convert("RGB"))
    assert torch.allclose(grey, rgb, atol=1e-6)
