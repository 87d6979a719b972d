"""Scale (MNIST-C): the image shrunk about its centre to 0.9 .. 0.5 of its size, bilinear, black around.
Deterministic."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, affine


@CORRUPTIONS.register("scale")
@dataclass(frozen=True)
class Scale(Corruption):
    levels = (0.9, 0.8, 0.7, 0.6, 0.5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        zoom = 1 / self.level(severity)
        matrix = torch.tensor([[zoom, 0.0, 0.0], [0.0, zoom, 0.0]], device=x.device)
        return affine(x, matrix.expand(len(x), 2, 3))
