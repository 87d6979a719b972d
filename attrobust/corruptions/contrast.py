"""Contrast (ImageNet-C / MNIST-C): (x - mean) * c + mean per image, c 0.4 .. 0.05 (ImageNet-C's). Deterministic."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption


@CORRUPTIONS.register("contrast")
@dataclass(frozen=True)
class Contrast(Corruption):
    levels = (0.4, 0.3, 0.2, 0.1, 0.05)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * self.level(severity) + mean).clamp(0, 1)
