"""Fog (MNIST-C's `fog`, after ImageNet-C): x + c plasma, scaled by max(x) / (max(x) + c) and clipped, where plasma is
the top-left corner of a 256 x 256 diamond-square fractal (each midpoint the mean of its corners plus a uniform
wibble, the wibble divided by `decay` at each halving; as the reference, the first wibble is 100 and each draw is
wibble x U(-wibble, wibble)), scaled to [0, 1]. MNIST-C's five levels (c, decay); its function's default is the fifth.
Batched: every image draws its own fractal from the counter-based uniforms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform

MAP_SIZE = 256  # the reference's plasma_fractal(mapsize=256)


@CORRUPTIONS.register("fog")
@dataclass(frozen=True)
class Fog(Corruption):
    levels = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # type: ignore[assignment]

    def check_fits(self, image_shape: tuple[int, ...]) -> None:
        if max(image_shape[-2:]) > MAP_SIZE:
            raise ValueError(f"fog draws a {MAP_SIZE}-pixel fractal, and these images are {image_shape[-2]} x "
                             f"{image_shape[-1]}; leave fog out for them")

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        strength, decay = self.levels[severity - 1]
        height, width = x.shape[-2:]
        self.check_fits(tuple(x.shape[1:]))
        plasma = plasma_fractal(lambda part, shape: uniform(self.stream(seed, part), indices, shape, x).double(),
                                len(x), decay, x.device)[:, None, :height, :width]
        peak = x.double().amax(dim=(1, 2, 3), keepdim=True)
        return ((x.double() + strength * plasma) * peak / (peak + strength)).clamp(0, 1).to(x.dtype)


def plasma_fractal(draw, batch: int, decay: float, device: torch.device) -> Tensor:
    """(batch, 256, 256) diamond-square heightmaps in [0, 1]; draw(part, shape) gives (batch, *shape) uniforms."""
    heights = torch.zeros(batch, MAP_SIZE, MAP_SIZE, dtype=torch.float64, device=device)
    step, wibble, level = MAP_SIZE, 100.0, 0

    def wibbled_mean(total: Tensor, part: str) -> Tensor:
        return total / 4 + wibble * (2 * draw(f"{level}:{part}", tuple(total.shape[1:])) - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        heights[:, half::step, half::step] = wibbled_mean(squares, "square")
        centres, corners = heights[:, half::step, half::step], heights[:, ::step, ::step]
        left = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, dims=2)
        heights[:, ::step, half::step] = wibbled_mean(left, "diamond-1")
        top = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, dims=1)
        heights[:, half::step, ::step] = wibbled_mean(top, "diamond-2")
        step, wibble, level = half, wibble / decay, level + 1
    heights = heights - heights.amin(dim=(1, 2), keepdim=True)
    return heights / heights.amax(dim=(1, 2), keepdim=True)
