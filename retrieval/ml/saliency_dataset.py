"""IG-CBIR's second-network inputs stored as .npy files: a torch Dataset (papers 001/003)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class SaliencyInputDataset(Dataset):
    """Stored (3, H, W) normalised saliency maps named `<id>.npy`, optionally flipped at random; items (x, target)."""

    def __init__(
        self, folder: Path, ids: Sequence[int], targets: Sequence[Any] | np.ndarray | None = None, *, flip: bool = False
    ) -> None:
        self.folder, self.ids, self.targets, self.flip = Path(folder), list(ids), targets, flip

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        x = torch.from_numpy(np.load(self.folder / f"{self.ids[index]}.npy").astype(np.float32))
        if self.flip and torch.rand(()) < 0.5:
            x = torch.flip(x, dims=[2])
        return x, index if self.targets is None else self.targets[index]
