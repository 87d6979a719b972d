"""Motion blur (MNIST-C): the mean along a line of L pixels (3 .. 11) through each pixel, at an angle drawn per image
(uniform in [0, 180) degrees), as a line kernel rasterised with bilinear weights; edges repeated."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, depthwise, uniform


@CORRUPTIONS.register("motion_blur")
@dataclass(frozen=True)
class MotionBlur(Corruption):
    levels = (3, 5, 7, 9, 11)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        length = int(self.level(severity))
        angle = math.pi * uniform(self.stream(seed), indices, (1,), x)[:, 0].double()       # (B,)
        t = torch.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length, dtype=torch.float64, device=x.device)
        rows = (length // 2) + t[None, :] * torch.sin(angle)[:, None]                     # (B, points)
        cols = (length // 2) + t[None, :] * torch.cos(angle)[:, None]
        grid = torch.arange(length, dtype=torch.float64, device=x.device)
        weight_rows = (1 - (rows[..., None] - grid).abs()).clamp(min=0)                   # (B, points, L)
        weight_cols = (1 - (cols[..., None] - grid).abs()).clamp(min=0)
        kernels = torch.einsum("bpr,bpc->brc", weight_rows, weight_cols)
        return depthwise(x, kernels / kernels.sum(dim=(1, 2), keepdim=True))
