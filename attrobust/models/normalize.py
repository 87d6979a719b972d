"""Input normalisation inside the model, so every attack and attribution sees pixels in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x - mean) / std per channel; `mean` and `std` are buffers (saved with the weights, moved with .to())."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have equal length and std > 0")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """`net(Normalize(x))`: takes float32 NCHW images in [0, 1] and returns logits."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))

    @property
    def gradcam_layer(self) -> str | None:
        """The module path (in this model) of the network's last convolutional block, which layer-based explainers
        (Grad-CAM) read; a network names it with a `gradcam_layer` attribute (None: it names none)."""
        inner = self.net.__dict__.get("gradcam_layer", getattr(type(self.net), "gradcam_layer", None))
        return None if inner is None else f"net.{inner}"
