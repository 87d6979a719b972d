"""Shear (MNIST-C): horizontal shear by a +/- factor of 0.1 .. 0.5 (sign drawn per image), bilinear, black outside."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, affine, signs


@CORRUPTIONS.register("shear")
@dataclass(frozen=True)
class Shear(Corruption):
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        factor = signs(self.stream(seed), indices, x) * self.level(severity)
        one, zero = torch.ones_like(factor), torch.zeros_like(factor)
        return affine(x, torch.stack([torch.stack([one, factor, zero], 1), torch.stack([zero, one, zero], 1)], 1))
