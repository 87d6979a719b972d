"""Impulse (salt-and-pepper) noise (MNIST-C): a share p of the pixels set to 0 or 1, half each; p 0.03 .. 0.27
(ImageNet-C's amounts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform


@CORRUPTIONS.register("impulse_noise")
@dataclass(frozen=True)
class ImpulseNoise(Corruption):
    levels = (0.03, 0.06, 0.09, 0.17, 0.27)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        u = uniform(self.stream(seed), indices, tuple(x.shape[1:]), x)
        p = self.level(severity)
        return torch.where(u < p / 2, 0.0, torch.where(u > 1 - p / 2, 1.0, x)).to(x.dtype)
