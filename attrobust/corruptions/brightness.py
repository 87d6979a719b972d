"""Brightness (ImageNet-C / MNIST-C): x + b, clipped, b 0.1 .. 0.5 (ImageNet-C adds them to HSV value; on grey
images the same). Deterministic."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption


@CORRUPTIONS.register("brightness")
@dataclass(frozen=True)
class Brightness(Corruption):
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        return (x + self.level(severity)).clamp(0, 1)
