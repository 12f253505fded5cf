"""The saliency method a run uses: Deep Taylor where its LRP rules cover the model, else Grad-CAM (with why)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from retrieval.ml.saliency import deep_taylor, resolve_saliency_method

pytestmark = pytest.mark.ml


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    )


def test_deep_taylor_is_kept_for_a_relu_cnn():
    assert resolve_saliency_method(_cnn(), "deep_taylor") == ("deep_taylor", "")
    assert resolve_saliency_method(_cnn(), "grad_cam") == ("grad_cam", "")


def test_models_outside_the_lrp_rules_fall_back_to_grad_cam_with_the_reason():
    gelu = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    )
    declared = _cnn()
    declared.supports_lrp = False
    for model in (gelu, declared):
        method, reason = resolve_saliency_method(model, "deep_taylor")
        assert method == "grad_cam" and "Deep Taylor does not apply" in reason
        with pytest.raises(NotImplementedError):
            deep_taylor(model, torch.rand(1, 3, 8, 8))
    assert "GELU" in resolve_saliency_method(gelu, "deep_taylor")[1]


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        resolve_saliency_method(_cnn(), "occlusion")
