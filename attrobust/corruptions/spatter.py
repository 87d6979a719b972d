"""Spatter (MNIST-C's `spatter`, ImageNet-C's mud): a liquid layer N(mean, std) per pixel, blurred (sigma), kept where
above a threshold; its mask blurred (sigma 2) and kept where >= 0.8 becomes mud of intensity 63/255 over the image:
x (1 - m) + 63/255 m. MNIST-C's five levels (mean, std, sigma, threshold, sigma 2); its function's default is the
fourth. Blurs as scikit-image's `gaussian` (mode 'nearest', truncate 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, gaussian_filter, normal

MUD = 63 / 255


@CORRUPTIONS.register("spatter")
@dataclass(frozen=True)
class Spatter(Corruption):
    levels = ((0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 3, 0.68, 0.6),  # type: ignore[assignment]
              (0.65, 0.3, 2, 0.68, 0.5), (0.65, 0.3, 1, 0.65, 1.5), (0.67, 0.4, 1, 0.65, 1.5))

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        mean, std, sigma, threshold, mask_sigma = self.levels[severity - 1]
        liquid = gaussian_filter(mean + std * normal(self.stream(seed), indices, tuple(x.shape[1:]), x.double()),
                                 sigma)
        mask = gaussian_filter((liquid > threshold).double(), mask_sigma)
        mask = torch.where(mask < 0.8, 0.0, mask)
        return (x.double() * (1 - mask) + MUD * mask).clamp(0, 1).to(x.dtype)
