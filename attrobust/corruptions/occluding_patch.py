"""Occluding patch: a white square of 4 .. 12 pixels a side at a position drawn per image (within the image)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform


@CORRUPTIONS.register("occluding_patch")
@dataclass(frozen=True)
class OccludingPatch(Corruption):
    levels = (4, 6, 8, 10, 12)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        side = int(self.level(severity))
        corner = uniform(self.stream(seed), indices, (2,), x)
        top = (corner[:, 0] * (x.shape[-2] - side + 1)).floor()
        left = (corner[:, 1] * (x.shape[-1] - side + 1)).floor()
        rows = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype)
        cols = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)
        inside = ((rows >= top[:, None]) & (rows < top[:, None] + side))[:, :, None] \
            & ((cols >= left[:, None]) & (cols < left[:, None] + side))[:, None, :]
        return torch.where(inside[:, None], torch.ones_like(x), x)
