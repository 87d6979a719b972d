"""Dotted line (after MNIST-C's): 1 .. 5 straight lines between two points drawn per image on the border, every
other pixel along each set to white."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform


@CORRUPTIONS.register("dotted_line")
@dataclass(frozen=True)
class DottedLine(Corruption):
    levels = (1, 2, 3, 4, 5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        lines, (height, width) = int(self.level(severity)), x.shape[-2:]
        ends = uniform(self.stream(seed), indices, (lines, 4), x).double()              # (B, lines, 4)
        start_rows, end_rows = ends[..., 0] * (height - 1), ends[..., 2] * (height - 1)
        start_cols, end_cols = torch.zeros_like(ends[..., 1]), torch.full_like(ends[..., 3], width - 1.0)
        dots = max(height, width)
        t = torch.arange(0, dots, 2, device=x.device, dtype=torch.float64) / (dots - 1)     # every other point
        rows = (start_rows[..., None] + t * (end_rows - start_rows)[..., None]).round().long()
        cols = (start_cols[..., None] + t * (end_cols - start_cols)[..., None]).round().long()
        flat = (rows * width + cols).flatten(1)                                          # (B, points)
        marked = torch.zeros(len(x), height * width, device=x.device, dtype=torch.bool)
        marked.scatter_(1, flat, True)
        return torch.where(marked.view(len(x), 1, height, width), torch.ones_like(x), x)
