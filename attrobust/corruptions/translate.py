"""Translation (MNIST-C): the image moved by 1 .. 5 pixels along each axis, each direction's sign drawn per image,
black coming in. Whole-pixel shifts, so no interpolation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, affine, signs


@CORRUPTIONS.register("translate")
@dataclass(frozen=True)
class Translate(Corruption):
    levels = (1, 2, 3, 4, 5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        pixels = self.level(severity)
        down = signs(self.stream(seed, "rows"), indices, x) * 2 * pixels / x.shape[-2]
        right = signs(self.stream(seed, "columns"), indices, x) * 2 * pixels / x.shape[-1]
        one, zero = torch.ones_like(down), torch.zeros_like(down)
        return affine(x, torch.stack([torch.stack([one, zero, -right], 1), torch.stack([zero, one, -down], 1)], 1))
