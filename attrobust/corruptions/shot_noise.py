"""Shot noise (MNIST-C's `shot_noise`): Poisson(c x) / c, clipped to [0, 1]; c 60, 25, 12, 5, 3 photons at full
intensity (MNIST-C's five levels; its function's default is the fifth). The Poisson draws are the inverse of the
CDF at the counter-based uniforms, so an image's noise depends only on the seed and its index."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform


@CORRUPTIONS.register("shot_noise")
@dataclass(frozen=True)
class ShotNoise(Corruption):
    levels = (60, 25, 12, 5, 3)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        photons = self.level(severity)
        u = uniform(self.stream(seed), indices, tuple(x.shape[1:]), x).double()
        return (poisson_inverse_cdf(x.double() * photons, u, photons) / photons).clamp(0, 1).to(x.dtype)


def poisson_inverse_cdf(rate: Tensor, u: Tensor, largest_rate: float) -> Tensor:
    """The smallest k with P(K <= k) >= u for K ~ Poisson(rate), elementwise (rate <= largest_rate): the number of
    CDF values below u, over k up to rate + 12 sqrt(rate) + 12 (the tail beyond holds < 1e-20)."""
    ks = torch.arange(int(largest_rate + 12 * math.sqrt(largest_rate) + 12), dtype=rate.dtype, device=rate.device)
    log_rate = torch.log(rate.clamp_min(1e-300)).unsqueeze(-1)
    log_pmf = ks * log_rate - rate.unsqueeze(-1) - torch.lgamma(ks + 1)
    cdf = torch.cumsum(torch.exp(log_pmf), dim=-1)
    return (cdf < u.unsqueeze(-1)).sum(dim=-1).to(rate.dtype)
