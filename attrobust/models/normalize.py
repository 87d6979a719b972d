"""Input normalisation inside the model, so every attack and attribution sees pixels in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelTraits:
    """What the rest of the system may read about a built model, declared once (never attached or found with
    `getattr`): the module layer-based explainers (Grad-CAM) read, the model's L2 Lipschitz constant where it is
    known by construction (certificates), and an activation its network calls as a function, which the smooth
    surrogate of attacks and training cannot swap."""

    cam_layer: str | None = None               # module path in the model (`net.features.4`); None: names none
    lipschitz_constant: float | None = None     # logits are L-Lipschitz in L2 on [0, 1] inputs
    unswappable_activation: str | None = None   # e.g. 'torch.relu called as a function'


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

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 traits: ModelTraits = ModelTraits()) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.traits = traits

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


def traits_of(model: nn.Module) -> ModelTraits:
    """The traits a model declares (a network that is not a `NormalizedModel`, such as a test's, declares none)."""
    return model.traits if isinstance(model, NormalizedModel) else ModelTraits()
