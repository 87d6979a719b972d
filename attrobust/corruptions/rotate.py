"""Rotation (MNIST-C's affine corruptions): by a +/- angle of 10 .. 50 degrees (the sign drawn per image) about the
centre, bilinear, black outside. The levels are ours (MNIST-C draws one range)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, affine, signs


@CORRUPTIONS.register("rotate")
@dataclass(frozen=True)
class Rotate(Corruption):
    levels = (10, 20, 30, 40, 50)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        angle = signs(self.stream(seed), indices, x) * math.radians(self.level(severity))
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        return affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))
