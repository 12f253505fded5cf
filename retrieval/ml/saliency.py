"""Saliency maps for classifiers: Grad-CAM (CNNs and ViTs), Deep Taylor relevance (LRP family), gradient × input.

IG-CBIR (papers 001/003) explains a trained DenseNet-121 with Deep Taylor decomposition (iNNvestigate),
sums the relevance over the colour channels, divides it by its max |value| and copies it into 3
channels as the input of a second network (`saliency_input`). Paper 000 shows Grad-CAM on the
``norm1`` layer of its ViT's last block; `grad_cam` picks that layer for timm ViTs by itself.

What `lrp_relevance` / `deep_taylor` implement (a faithful rule set, not an approximation by gradients):

* Conv2d in hidden layers: the z+ rule (Deep Taylor decomposition for ReLU inputs, Montavon et al.
  2017): R_j = Σ_k (a_j w_jk)^+ / Σ_j' (a_j' w_j'k)^+ · R_k. Biases receive no relevance. For
  non-negative inputs this is exactly z+; for signed inputs it is LRP-α1β0 (positive contributions).
* The first Conv2d (the one fed the image): the z^B rule for inputs bounded by [low, high] (Deep
  Taylor's "bounded" rule, iNNvestigate's ``deep_taylor.bounded``). Bounds default to the image
  range 0..1 after the model's mean/std normalisation, widened to include every pixel given.
* Linear: LRP-ε (ε = `epsilon` · sign(z)); with a bias, the bias's share of z keeps its relevance.
* BatchNorm (also timm's BatchNormAct2d = BN + ReLU): relevance passes through unchanged (identity
  rule; BN is element-wise, so each unit keeps its own relevance). iNNvestigate treats BN differently.
* ReLU, max pooling (winner takes all), average/global pooling (LRP-0 = z+ for ReLU inputs),
  concatenation (DenseNet) and residual addition (proportional split): plain gradient × input,
  which is what LRP-0 reduces to for these bias-free linear or piecewise-linear operations.

Implementation: each rule is applied in a forward hook that keeps the layer's output value but swaps
its gradient ("gradient trick", Montavon et al. 2019), so one backward pass gives R = x ⊙ ∂score/∂x
(plus the z^B bound terms). Relevance starts as the target logit and is conserved layer by layer up
to the relevance of biases in Linear layers and units whose positive contributions are all zero.
Models with other layers (LayerNorm, attention, GELU, sigmoid gates: ViTs, ConvNeXt, SE nets) are
refused with NotImplementedError: use `grad_cam` or `gradient_x_input` for those. `gradient_x_input`
is LRP-0 (= LRP-ε with ε → 0) for ReLU networks without biases (Ancona et al. 2018), not Deep Taylor.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .device import resolve_device
from .embed import as_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

Target = int | Sequence[int] | torch.Tensor | None
Progress = Callable[[int, int], None]
METHODS = ("deep_taylor", "grad_cam", "gradient_x_input")
_PASS_THROUGH = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Flatten,
)
_RULED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
_TINY = 1e-12


# --- shared helpers -----------------------------------------------------------------------


@contextlib.contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode with autograd on (even inside an inference_mode block); every submodule's mode is restored."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _leaf_input(x: torch.Tensor) -> torch.Tensor:
    """A float copy of the batch that autograd tracks."""
    return x.detach().clone().float().requires_grad_(True)


def target_scores(logits: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Logit (n,) of the target class: a binary model's only logit, else the argmax or the given class(es)."""
    logits = logits.reshape(len(logits), -1)
    if logits.shape[1] == 1:
        return logits[:, 0]
    if target is None:
        index = logits.argmax(dim=1)
    else:
        index = torch.as_tensor(target, device=logits.device, dtype=torch.long).reshape(-1)
        index = index.expand(len(logits)) if index.numel() == 1 else index
    if index.numel() != len(logits):
        raise ValueError(f"got {index.numel()} targets for {len(logits)} images.")
    return logits.gather(1, index[:, None])[:, 0]


def _logits(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The logits of a model output (the last element of a tuple output, e.g. (embedding, ratings))."""
    return output[-1] if isinstance(output, (tuple, list)) else output


# --- Grad-CAM -----------------------------------------------------------------------------


def is_vit(model: nn.Module) -> bool:
    """Whether the model is a timm ViT-style token model (patch_embed + blocks with norm1)."""
    blocks = getattr(model, "blocks", None)
    return hasattr(model, "patch_embed") and blocks is not None and len(blocks) > 0 and hasattr(blocks[-1], "norm1")


def default_cam_layer(model: nn.Module) -> nn.Module | None:
    """Grad-CAM layer: `model.cam_layer` if set, a ViT's last block norm1 (paper 000), else None = forward_features."""
    explicit = getattr(model, "cam_layer", None)
    if isinstance(explicit, nn.Module):
        return explicit
    if is_vit(model):
        return model.blocks[-1].norm1
    return None


def _resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module | None:
    """A module from a module, a dotted submodule name, or the per-architecture default."""
    if layer is None:
        return default_cam_layer(model)
    return model.get_submodule(layer) if isinstance(layer, str) else layer


def _activations_and_logits(
    model: nn.Module, x: torch.Tensor, layer: nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen layer's output and the logits of one forward pass."""
    if layer is None:
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise ValueError(f"{type(model).__name__} has no forward_features/forward_head: pass a layer.")
        activations = model.forward_features(x)
        return activations, _logits(model.forward_head(activations))
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = _logits(model(x))
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {type(layer).__name__} was not used in the forward pass.")
    return captured[-1], logits


def _as_grid(model: nn.Module, tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """ViT tokens (n, T, C) → (n, C, h, w): prefix (class/register) tokens dropped, patches on the patch grid."""
    patches = tokens[:, int(getattr(model, "num_prefix_tokens", 0)) :]
    embed = getattr(model, "patch_embed", None)
    if embed is not None and hasattr(embed, "dynamic_feat_size"):
        h, w = embed.dynamic_feat_size(image_hw)
    elif embed is not None:
        h, w = embed.grid_size
    else:
        h = w = int(round(patches.shape[1] ** 0.5))
    if h * w != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not fill a {h}×{w} grid.")
    return patches.transpose(1, 2).reshape(len(tokens), -1, h, w)


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: Target = None, layer: nn.Module | str | None = None
) -> torch.Tensor:
    """Grad-CAM maps (n, H, W) at the input size: ReLU(Σ_c mean(∂score/∂A_c) · A_c), upsampled bilinearly."""
    module = _resolve_layer(model, layer)
    with _explaining(model):
        inputs = _leaf_input(x)
        activations, logits = _activations_and_logits(model, inputs, module)
        grads = torch.autograd.grad(target_scores(logits, target).sum(), activations)[0]
    if activations.ndim == 3:  # transformer tokens
        activations = _as_grid(model, activations, tuple(x.shape[-2:]))
        grads = _as_grid(model, grads, tuple(x.shape[-2:]))
    if activations.ndim != 4:
        raise ValueError(f"Grad-CAM needs a (n, C, h, w) or token layer, got shape {tuple(activations.shape)}.")
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return cam[:, 0].detach()


# --- gradient × input and Deep Taylor (LRP) --------------------------------------------------


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """x ⊙ ∂score/∂x, (n, C, H, W): equals LRP-0 for bias-free ReLU networks (sums to the score there)."""
    with _explaining(model):
        inputs = _leaf_input(x)
        score = target_scores(_logits(model(inputs)), target)
        grads = torch.autograd.grad(score.sum(), inputs)[0]
    return (inputs * grads).detach()


def check_lrp_support(model: nn.Module) -> None:
    """Raise NotImplementedError when the model has layers the LRP rules here do not cover."""
    if not getattr(model, "supports_lrp", True):
        raise NotImplementedError(f"{type(model).__name__} declares supports_lrp = False: use grad_cam.")
    unsupported: set[str] = set()

    def visit(module: nn.Module) -> None:
        if isinstance(module, _RULED):
            return  # ruled layers: their children (e.g. BatchNormAct2d's ReLU) are covered by the rule
        children = list(module.children())
        if not children and not isinstance(module, _PASS_THROUGH):
            unsupported.add(type(module).__name__)
        for child in children:
            visit(child)

    visit(model)
    if unsupported:
        raise NotImplementedError(
            f"Deep Taylor/LRP rules cover Conv2d, Linear, BatchNorm, ReLU and pooling only; "
            f"{type(model).__name__} also has {sorted(unsupported)}. Use grad_cam or gradient_x_input."
        )


def resolve_saliency_method(model: nn.Module, method: str) -> tuple[str, str]:
    """(method to use, reason): "deep_taylor" becomes "grad_cam" for models the LRP rules do not cover.

    Decided once per model, before any map is computed, so that every map of a run comes from the
    same method; the reason ("" when the asked method is used) is for the run's record.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if method != "deep_taylor":
        return method, ""
    try:
        check_lrp_support(model)
    except NotImplementedError as exc:
        return "grad_cam", f"Deep Taylor does not apply to this classifier ({exc}); Grad-CAM used instead."
    return method, ""


def _with_gradient_of(output: torch.Tensor, surrogate: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Value of `output`, gradient of `surrogate` · output/denominator (0 where it is ≈ 0): the LRP gradient trick."""
    safe = denominator.abs() > _TINY
    scale = torch.where(safe, output / torch.where(safe, denominator, torch.ones_like(denominator)), 0.0).detach()
    return output.detach() + (surrogate - surrogate.detach()) * scale


def _sign_stabilised(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """z + ε·sign(z), with sign(0) = +1."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0)


def _conv(module: nn.Conv2d, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The module's convolution with another weight and no bias."""
    return F.conv2d(inputs, weight, None, module.stride, module.padding, module.dilation, module.groups)


def _z_plus(module: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Σ_j (a_j w_jk)^+ for every output unit k."""
    return _conv(module, a.clamp(min=0), module.weight.clamp(min=0)) + _conv(
        module, a.clamp(max=0), module.weight.clamp(max=0)
    )


def _z_box(module: nn.Conv2d, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Σ_j (x_j w_jk − l_j w_jk^+ − h_j w_jk^−) ≥ 0 for l ≤ x ≤ h: the Deep Taylor z^B rule's denominator."""
    w = module.weight
    return _conv(module, x, w) - _conv(module, low, w.clamp(min=0)) - _conv(module, high, w.clamp(max=0))


def _input_bounds(model: nn.Module, x: torch.Tensor, bounds: tuple[object, object] | None) -> tuple[torch.Tensor, ...]:
    """Per-pixel (low, high) for the z^B rule, widened to contain x; tracked by autograd."""
    if bounds is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = torch.tensor(cfg.get("mean") or IMAGENET_MEAN, dtype=x.dtype, device=x.device)
        std = torch.tensor(cfg.get("std") or IMAGENET_STD, dtype=x.dtype, device=x.device)
        if mean.numel() != x.shape[1]:
            mean, std = mean.mean().expand(x.shape[1]), std.mean().expand(x.shape[1])
        low, high = (-mean / std)[None, :, None, None], ((1 - mean) / std)[None, :, None, None]
    else:
        low, high = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
        low, high = (b.reshape(1, -1, 1, 1) if b.ndim == 1 else b for b in (low, high))
    low = torch.minimum(low.expand_as(x), x.detach()).clone().requires_grad_(True)
    high = torch.maximum(high.expand_as(x), x.detach()).clone().requires_grad_(True)
    return low, high


def _lrp_hook(inputs_leaf: torch.Tensor, low: torch.Tensor, high: torch.Tensor, epsilon: float, fired: list[int]):
    """The forward hook that swaps each ruled layer's gradient for its LRP rule."""

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        a = args[0]
        if isinstance(module, nn.Conv2d):
            if a is inputs_leaf:
                fired.append(1)
                z = _z_box(module, a, low, high)
            else:
                z = _z_plus(module, a)
            return _with_gradient_of(output, z, z)
        if isinstance(module, nn.Linear):
            return _with_gradient_of(output, output, _sign_stabilised(output, epsilon))
        return _with_gradient_of(output, a, _sign_stabilised(a, _TINY))  # BatchNorm (+act): identity rule

    return hook


def lrp_relevance(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    bounds: tuple[object, object] | None = None,
    epsilon: float = 1e-6,
) -> torch.Tensor:
    """Deep Taylor relevance per input value (n, C, H, W): z^B at the pixels, z+ in conv layers, LRP-ε in Linear.

    `bounds` = (low, high) of the normalised input, scalars or per-channel; see the module docstring.
    """
    check_lrp_support(model)
    with _explaining(model):
        inputs = _leaf_input(x)
        low, high = _input_bounds(model, inputs, bounds)
        fired: list[int] = []
        hook = _lrp_hook(inputs, low, high, epsilon, fired)
        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _RULED)]
        try:
            score = target_scores(_logits(model(inputs)), target)
        finally:
            for handle in handles:
                handle.remove()
        if not fired:
            raise NotImplementedError("no Conv2d receives the input image directly: the z^B rule has no layer.")
        gx, gl, gh = torch.autograd.grad(score.sum(), (inputs, low, high), allow_unused=True)
    relevance = inputs * gx + sum(b * g for b, g in ((low, gl), (high, gh)) if g is not None)
    return relevance.detach()


def deep_taylor(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    bounds: tuple[object, object] | None = None,
    epsilon: float = 1e-6,
) -> torch.Tensor:
    """Deep Taylor saliency (n, H, W): `lrp_relevance` summed over the colour channels (IG-CBIR's map)."""
    return lrp_relevance(model, x, target, bounds=bounds, epsilon=epsilon).sum(dim=1)


# --- post-processing ----------------------------------------------------------------------


def normalise_saliency(maps: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Each map divided by its own max |value| (all-zero maps stay zero): values in [−1, 1]."""
    if isinstance(maps, torch.Tensor):
        peak = maps.detach().abs().flatten(1).amax(dim=1).clamp(min=_TINY)
        return maps / peak.reshape(-1, *([1] * (maps.ndim - 1)))
    maps = np.asarray(maps, dtype=np.float32)
    peak = np.maximum(np.abs(maps).reshape(len(maps), -1).max(axis=1), _TINY)
    return maps / peak.reshape(-1, *([1] * (maps.ndim - 1)))


def saliency_to_3ch(maps: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """(n, H, W) maps copied into 3 channels, (n, 3, H, W), as the input of IG-CBIR's second network."""
    if isinstance(maps, torch.Tensor):
        return maps[:, None].expand(-1, 3, -1, -1).contiguous()
    return np.repeat(np.asarray(maps)[:, None], 3, axis=1)


def saliency(model: nn.Module, x: torch.Tensor, method: str = "deep_taylor", target: Target = None) -> torch.Tensor:
    """Raw single-channel saliency maps (n, H, W) by "deep_taylor", "grad_cam" or "gradient_x_input"."""
    if method == "deep_taylor":
        return deep_taylor(model, x, target)
    if method == "grad_cam":
        return grad_cam(model, x, target)
    if method == "gradient_x_input":
        return gradient_x_input(model, x, target).sum(dim=1)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


def saliency_input(
    model: nn.Module, x: torch.Tensor, method: str = "deep_taylor", target: Target = None
) -> torch.Tensor:
    """IG-CBIR's second-network input (n, 3, H, W): channel-summed saliency / max |value|, in 3 channels."""
    return saliency_to_3ch(normalise_saliency(saliency(model, x, method, target)))


def saliency_maps(
    model: nn.Module,
    images: Dataset | torch.Tensor,
    *,
    method: str = "deep_taylor",
    target: Target = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Float32 (n, H, W) raw saliency maps for a tensor batch or a Dataset of (tensor, _) items, batch by batch."""
    device = resolve_device(device)
    model.to(device)
    loader = DataLoader(as_dataset(images, None), batch_size=batch_size, shuffle=False)
    total = len(loader.dataset)  # type: ignore[arg-type]
    chunks: list[np.ndarray] = []
    for batch in loader:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        chunks.append(saliency(model, x.to(device), method, target).float().cpu().numpy())
        if progress:
            progress(sum(len(c) for c in chunks), total)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0, 0), dtype=np.float32)


def _colormap_rgb(values: np.ndarray, name: str) -> np.ndarray:
    """Float RGB (H, W, 3) in 0..1 of values in 0..1 through a matplotlib colormap."""
    return colormaps[name](values)[..., :3]


def overlay_png(image_uint8: np.ndarray, saliency_map: np.ndarray, alpha: float = 0.5, *, cmap: str = "jet") -> bytes:
    """PNG bytes of the image under a heat map of the saliency's positive part, opacity alpha · saliency/max.

    The map is resized to the image (bilinear) and divided by its max |value|; negative evidence is not shown.
    """
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    height, width = rgb.shape[:2]
    s = np.asarray(saliency_map, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D saliency map, got shape {s.shape}.")
    if s.shape != (height, width):
        s = np.asarray(Image.fromarray(s).resize((width, height), Image.BILINEAR))
    v = np.clip(normalise_saliency(s[None])[0], 0.0, 1.0)
    a = (alpha * v)[:, :, None]
    blended = (1.0 - a) * (rgb.astype(np.float32) / 255.0) + a * _colormap_rgb(v, cmap)
    out = io.BytesIO()
    Image.fromarray(np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()
