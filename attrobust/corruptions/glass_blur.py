"""Glass blur (MNIST-C's `glass_blur`, after ImageNet-C): a Gaussian blur of sigma, rounded down to 8 bits, then
`iterations` sweeps over the pixels (from the bottom-right, `max_delta` pixels from the border) in which each pixel
is swapped, with probability 1/2, with the one (dy, dx) away, each drawn from [-max_delta, max_delta); then the blur
again. As the reference runs it (scikit-image's `gaussian(..., multichannel=True)` on a 2-D image takes the columns
for channels), each blur runs along the rows alone. MNIST-C's five levels (sigma, max_delta, iterations); its
function's default is the first. The sweep is sequential over pixel positions as in the reference (a swap moves a
pixel that a later swap may move again) and batched over the images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, gaussian_filter, uniform


@CORRUPTIONS.register("glass_blur")
@dataclass(frozen=True)
class GlassBlur(Corruption):
    levels = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # type: ignore[assignment]

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        sigma, delta, iterations = self.levels[severity - 1]
        blurred = torch.floor(gaussian_filter(x, sigma, rows_only=True).clamp(0, 1) * 255) / 255  # uint8 truncates
        height, width = x.shape[-2:]
        positions = [(h, w) for h in range(height - delta, delta, -1) for w in range(width - delta, delta, -1)]
        draws = uniform(self.stream(seed), indices, (iterations, len(positions), 3), x).double()
        shuffled = shuffle(blurred, positions, draws, delta)
        return gaussian_filter(shuffled, sigma, rows_only=True).clamp(0, 1).to(x.dtype)


def shuffle(x: Tensor, positions: list[tuple[int, int]], draws: Tensor, delta: int) -> Tensor:
    """The sweeps of swaps: draws (B, sweeps, positions, 3) give each swap's coin, dx and dy."""
    batch, channels, height, width = x.shape
    flat = x.reshape(batch, channels, height * width).clone()
    swap = draws[..., 0] < 0.5
    dx = torch.floor(draws[..., 1] * 2 * delta).long() - delta
    dy = torch.floor(draws[..., 2] * 2 * delta).long() - delta
    for sweep in range(draws.shape[1]):
        for n, (h, w) in enumerate(positions):
            here = h * width + w
            there = ((h + dy[:, sweep, n]) * width + w + dx[:, sweep, n])[:, None, None].expand(batch, channels, 1)
            a, b = flat[:, :, here].clone(), flat.gather(2, there)[..., 0]  # a copy: `here` is written first
            chosen = swap[:, sweep, n, None]
            flat[:, :, here] = torch.where(chosen, b, a)
            flat.scatter_(2, there, torch.where(chosen, a, b)[..., None])
    return flat.view_as(x)
