"""Centre of mass of saliency maps and its shift (Ghorbani et al.'s mass-center measure).

C(s) = (sum_ij s_ij * i, sum_ij s_ij * j) / sum_ij s_ij in pixel units (row, column). The reference divides by h*w
instead of sum(s), which is the same for its maps (they sum to h*w); here the division by sum(s) makes any
non-negative map work. An all-zero map has no centre (NaN).

Shapes: maps (N, H*W) with `image_size=(H, W)` -> centres (N, 2), shifts (N,) in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric


def center_of_mass(maps: Tensor, image_size: tuple[int, int]) -> Tensor:
    height, width = image_size
    grid = maps.detach().to(torch.float64).view(-1, height, width)
    total = grid.sum(dim=(1, 2))
    rows = torch.arange(height, dtype=torch.float64, device=maps.device)
    cols = torch.arange(width, dtype=torch.float64, device=maps.device)
    return torch.stack([(grid.sum(2) * rows).sum(1) / total, (grid.sum(1) * cols).sum(1) / total], dim=1)


def center_shift(original: Tensor, perturbed: Tensor, image_size: tuple[int, int]) -> Tensor:
    """L2 distance in pixels between the centres of mass of two batches of maps."""
    return torch.linalg.vector_norm(center_of_mass(original, image_size) - center_of_mass(perturbed, image_size),
                                    dim=1)


@METRICS.register("center_shift")
@dataclass(frozen=True)
class CenterShift(Metric):
    """How far the saliency's centre of mass moved, in pixels (lower: more robust)."""

    heading = "shift"
    symmetric = True
    unit = "px"
    higher_is_better = False
    identical = 0.0

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return center_shift(original, perturbed, maps.image_size)
