"""Stripe (after MNIST-C's): a vertical band of 2 .. 6 pixels at a column drawn per image, its pixels inverted
(1 - x)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform


@CORRUPTIONS.register("stripe")
@dataclass(frozen=True)
class Stripe(Corruption):
    levels = (2, 3, 4, 5, 6)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        width = int(self.level(severity))
        left = (uniform(self.stream(seed), indices, (1,), x)[:, 0] * (x.shape[-1] - width + 1)).floor()
        columns = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)
        inside = (columns >= left[:, None]) & (columns < left[:, None] + width)          # (B, W)
        return torch.where(inside[:, None, None, :], 1 - x, x)
