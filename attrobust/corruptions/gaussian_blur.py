"""Gaussian blur: each image convolved with a Gaussian of standard deviation sigma pixels (0.5 .. 2 on a 28-pixel
image; ImageNet-C's 1 .. 6 at 224 pixels scaled to MNIST's size), edges repeated. Deterministic."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, depthwise, gaussian_kernel


@CORRUPTIONS.register("gaussian_blur")
@dataclass(frozen=True)
class GaussianBlur(Corruption):
    levels = (0.5, 0.75, 1.0, 1.5, 2.0)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        sigma = self.level(severity)
        return depthwise(x, gaussian_kernel(sigma, math.ceil(3 * sigma), x).expand(len(x), -1, -1))
