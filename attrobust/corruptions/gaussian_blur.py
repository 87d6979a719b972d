"""Gaussian blur: each image convolved with a Gaussian of standard deviation sigma pixels (0.5 .. 2 on a 28-pixel
image; ImageNet-C's 1 .. 6 at 224 pixels scaled to MNIST's size), edges repeated. Deterministic."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, depthwise


@CORRUPTIONS.register("gaussian_blur")
@dataclass(frozen=True)
class GaussianBlur(Corruption):
    levels = (0.5, 0.75, 1.0, 1.5, 2.0)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        sigma = self.level(severity)
        radius = math.ceil(3 * sigma)
        steps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
        line = torch.exp(-steps**2 / (2 * sigma**2))
        kernel = torch.outer(line, line) / line.sum() ** 2
        return depthwise(x, kernel.expand(len(x), -1, -1))
