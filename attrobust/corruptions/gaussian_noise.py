"""Gaussian noise (ImageNet-C / MNIST-C): x + sigma * z, clipped to [0, 1]; sigma 0.08 .. 0.38 (ImageNet-C's)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, normal


@CORRUPTIONS.register("gaussian_noise")
@dataclass(frozen=True)
class GaussianNoise(Corruption):
    levels = (0.08, 0.12, 0.18, 0.26, 0.38)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        return (x + self.level(severity) * normal(self.stream(seed), indices, tuple(x.shape[1:]), x)).clamp(0, 1)
