"""retrieval.ml.saliency: Grad-CAM (CNNs, ViT), Deep Taylor relevance, gradient × input, normalisation, overlays."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from retrieval.ml.backbones import create_backbone, embedding_dim
from retrieval.ml.embed import embed_images
from retrieval.ml.saliency import (
    check_lrp_support,
    deep_taylor,
    default_cam_layer,
    grad_cam,
    gradient_x_input,
    lrp_relevance,
    normalise_saliency,
    overlay_png,
    saliency_input,
    saliency_maps,
    saliency_to_3ch,
)
from retrieval.ml.train import fit
from retrieval.ml.transforms import build_transform

pytestmark = pytest.mark.ml


def ignore_half(model: nn.Module, side: str) -> nn.Module:
    """Make the model blind to one half of the image: its first conv sees zeros there (a forward pre-hook)."""
    first = model.get_submodule(model.pretrained_cfg["first_conv"])

    def hook(_module, args):
        x = args[0].clone()
        half = x.shape[-1] // 2
        if side == "right":
            x[..., half:] = 0
        else:
            x[..., :half] = 0
        return (x,)

    first.register_forward_pre_hook(hook)
    return model


def two_blobs(n: int, size: int) -> torch.Tensor:
    """Images with the same bright blob in the left and the right half, plus a little noise."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    sigma2 = 2 * (size / 8) ** 2
    image = sum(2 * torch.exp(-((yy - size / 2) ** 2 + (xx - cx) ** 2) / sigma2) for cx in (size / 4, 3 * size / 4))
    noise = 0.1 * torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    return image + noise


def left_share(cam: torch.Tensor) -> float:
    """Fraction of the saliency mass in the left half of the maps."""
    return float(cam[..., : cam.shape[-1] // 2].sum() / cam.sum())


def cnn(name: str, side: str) -> nn.Module:
    """A random timm CNN with a non-negative one-logit head (so its Grad-CAM is non-zero), blind to one half."""
    torch.manual_seed(0)
    model = create_backbone(name, weights="random", num_classes=1)
    with torch.no_grad():
        model.get_classifier().weight.abs_()
        model.get_classifier().bias.zero_()
    return ignore_half(model, side)


@pytest.mark.parametrize("name", ["test_resnet", "densenet121"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_grad_cam_of_a_cnn_falls_on_the_half_it_sees(name, side):
    cam = grad_cam(cnn(name, side), two_blobs(1, 128))
    assert cam.shape == (1, 128, 128)
    assert cam.max() > 0 and torch.isfinite(cam).all()
    # deep receptive fields leak across the middle; a blind half must still hold clearly less mass
    share = left_share(cam)
    assert share > 0.6 if side == "right" else share < 0.4


def tiny_vit(depth: int) -> nn.Module:
    """vit_tiny at 64 px (a 4×4 patch grid), random; position embeddings and patch bias zeroed."""
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch16_224", weights="random", num_classes=8, img_size=64, depth=depth)
    with torch.no_grad():
        model.pos_embed.zero_()
        model.patch_embed.proj.bias.zero_()
    return model


@pytest.mark.parametrize("side", ["right", "left"])
def test_grad_cam_of_a_vit_uses_the_last_norm1_on_the_patch_grid(side):
    # With one block, norm1 sees the patch tokens directly: the blind half's tokens are exactly zero,
    # so all Grad-CAM mass must lie on the seen half; a wrong token order or a kept class token fails.
    model = ignore_half(tiny_vit(depth=1), side)
    assert default_cam_layer(model) is model.blocks[-1].norm1
    cam = grad_cam(model, two_blobs(2, 64))
    assert cam.shape == (2, 64, 64) and cam.max() > 0
    share = left_share(cam)
    assert share > 0.85 if side == "right" else share < 0.15


def test_grad_cam_of_a_deeper_vit_is_finite_and_non_trivial():
    model = tiny_vit(depth=2)
    assert default_cam_layer(model) is model.blocks[1].norm1
    x = two_blobs(2, 64)
    cams = [grad_cam(model, x, target=t) for t in range(8)]
    assert all(c.shape == (2, 64, 64) and torch.isfinite(c).all() and c.min() >= 0 for c in cams)
    # a random class may have only negative evidence (ReLU → 0); most classes must give a structured map
    assert sum(bool(c.amax(dim=(1, 2)).min() > 0 and c.std() > 0) for c in cams) >= 4


def test_grad_cam_restores_training_mode_and_leaves_no_parameter_gradients():
    model = cnn("test_resnet", "right").train()
    grad_cam(model, two_blobs(1, 64), layer="layer3")
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def tiny_relu_net(*, bias: bool = True) -> nn.Module:
    """Conv–BN–ReLU–maxpool–conv–ReLU–GAP–Linear with non-negative output weights (eval mode)."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 6, 3, padding=1, bias=bias)]
    layers += [nn.BatchNorm2d(6)] if bias else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3, bias=False)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        if bias:
            net[1].running_mean.uniform_(-0.2, 0.2)
            net[1].running_var.uniform_(0.5, 2.0)
            net[1].bias.uniform_(-0.1, 0.1)
        net[-1].weight.abs_()
    return net.eval()


def test_deep_taylor_conserves_the_logit_and_is_non_negative():
    net = tiny_relu_net()
    x = torch.rand(4, 3, 12, 12) * 2 - 1
    relevance = lrp_relevance(net, x, target=0, bounds=(-1.0, 1.0), epsilon=1e-9)
    assert relevance.shape == x.shape
    # z^B at the pixels and z+ in the conv layers pass on positive relevance only, and conserve it
    assert relevance.min() >= -1e-6
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), net(x)[:, 0].detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(deep_taylor(net, x, 0, bounds=(-1.0, 1.0), epsilon=1e-9), relevance.sum(dim=1))


def test_gradient_x_input_is_lrp0_for_a_bias_free_relu_net():
    net = tiny_relu_net(bias=False)
    x = torch.randn(3, 3, 12, 12)
    gxi = gradient_x_input(net, x, target=1)
    # positive homogeneity: x · ∇f(x) = f(x), the LRP-0 conservation property
    torch.testing.assert_close(gxi.sum(dim=(1, 2, 3)), net(x)[:, 1].detach(), rtol=1e-4, atol=1e-6)
    assert gxi.min() < 0  # unlike z+, gradient × input keeps negative evidence


def test_deep_taylor_on_densenet_conserves_the_logit():
    torch.manual_seed(0)
    model = create_backbone("densenet121", weights="random", num_classes=1).eval()
    x = torch.randn(1, 3, 64, 64)
    relevance = lrp_relevance(model, x)
    with torch.no_grad():
        logit = model(x)[0, 0]
    assert relevance.shape == (1, 3, 64, 64) and torch.isfinite(relevance).all()
    assert float(relevance.sum()) == pytest.approx(float(logit), rel=1e-3, abs=1e-5)


def test_lrp_refuses_models_with_unsupported_layers():
    with pytest.raises(NotImplementedError, match="LayerNorm"):
        check_lrp_support(tiny_vit(depth=1))


def test_normalise_saliency_divides_each_map_by_its_max_abs_value():
    maps = np.stack([np.array([[1.0, -4.0], [2.0, 0.5]]), np.zeros((2, 2)), np.array([[0.2, 0.1], [0.0, 0.05]])])
    out = normalise_saliency(maps)
    np.testing.assert_allclose(np.abs(out).reshape(3, -1).max(axis=1), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(out[0], maps[0] / 4.0)
    torch_out = normalise_saliency(torch.from_numpy(maps))
    np.testing.assert_allclose(torch_out.numpy(), out, rtol=1e-6)


def test_saliency_input_is_normalised_and_three_channel():
    net = tiny_relu_net()
    x = torch.rand(2, 3, 12, 12)
    inputs = saliency_input(net, x, method="gradient_x_input", target=0)
    assert inputs.shape == (2, 3, 12, 12)
    assert torch.equal(inputs[:, 0], inputs[:, 2])
    torch.testing.assert_close(inputs.abs().flatten(1).amax(dim=1), torch.ones(2))
    assert saliency_to_3ch(np.zeros((4, 5, 6))).shape == (4, 3, 5, 6)


def test_saliency_maps_runs_batch_by_batch_with_progress():
    net = tiny_relu_net()
    seen: list[tuple[int, int]] = []
    maps = saliency_maps(
        net,
        torch.rand(5, 3, 12, 12),
        method="deep_taylor",
        target=0,
        batch_size=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert maps.shape == (5, 12, 12) and maps.dtype == np.float32
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_overlay_png_blends_a_jet_heat_map_where_the_saliency_is():
    image = np.full((40, 60), 100, dtype=np.uint8)
    sal = np.zeros((10, 15), dtype=np.float32)
    sal[:, :5] = 1.0  # hot on the left third
    png = overlay_png(image, sal, alpha=0.6)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out = np.asarray(Image.open(io.BytesIO(png)))
    assert out.shape == (40, 60, 3)
    assert np.all(out[:, -10:] == 100)  # zero saliency: the image unchanged
    assert np.abs(out[:, :10].astype(int) - 100).max() > 50  # hot: coloured


def test_ig_cbir_trains_a_second_network_on_normalised_saliency_maps(make_toy):
    # papers 001/003: classifier → Deep Taylor maps (÷ max |value|, 3 channels) → a copy fine-tuned on
    # the maps → penultimate features of the maps for retrieval
    images, labels = make_toy(32, size=32)
    transform = build_transform(crop=32, resize=32)
    x = torch.stack([transform(image) for image in images])
    y = torch.as_tensor(labels, dtype=torch.float32)
    torch.manual_seed(0)
    classifier = create_backbone("test_resnet", weights="random", num_classes=1)
    fit(classifier, DataLoader(TensorDataset(x, y), batch_size=16), None, task="binary", epochs=1, device="cpu")
    maps = torch.from_numpy(saliency_to_3ch(normalise_saliency(saliency_maps(classifier, x, method="deep_taylor"))))
    assert maps.shape == x.shape and float(maps.abs().amax()) == pytest.approx(1.0)
    second = copy.deepcopy(classifier)
    fit(second, DataLoader(TensorDataset(maps, y), batch_size=16), None, task="binary", epochs=1, device="cpu")
    features = embed_images(second, maps)
    assert features.shape == (32, embedding_dim(second))
