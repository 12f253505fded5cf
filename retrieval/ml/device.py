"""Device choice and mixed precision: CUDA with float16 autocast when available, else CPU in float32."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or CUDA when available and "auto"/None, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager[object]:
    """Mixed-precision context on CUDA (float16); a no-op on the CPU or when disabled."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
