"""Structural similarity (SSIM) of the original and perturbed maps, as Adebayo et al. ("Sanity Checks for Saliency
Maps", NeurIPS 2018) compare explanations with scikit-image's `structural_similarity` (1: the same structure).

Each map is first scaled to [0, 1] by its own maximum (saliency maps are >= 0; an all-zero map stays zero), then
SSIM is scikit-image's default for 2-D images with `data_range=1`: a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, the
sample covariance (49 / 48), and the mean over the pixels whose whole window lies inside the map (scikit-image crops
3 pixels from each border before its mean, so the border mode never enters). Batched over images with one average
pool per statistic (tested against scikit-image on the same maps).

Uncertain: the sanity-check paper says maps were normalised before SSIM without giving the rule; dividing by the
maximum is this metric's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric

WINDOW, K1, K2 = 7, 0.01, 0.03


@METRICS.register("ssim")
@dataclass(frozen=True)
class SSIM(Metric):
    heading = "SSIM"
    symmetric = True

    def check_fits(self, height: int, width: int) -> None:
        if min(height, width) < WINDOW:
            raise ValueError(f"needs maps of at least {WINDOW} x {WINDOW} pixels, got {height} x {width}")

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        height, width = maps.image_size
        a, b = (scaled(m.detach().to(torch.float64)).view(-1, 1, height, width) for m in (original, perturbed))
        return structural_similarity(a, b)


def scaled(maps: Tensor) -> Tensor:
    """Each (N, D) map divided by its maximum (an all-zero map stays zero)."""
    top = maps.amax(dim=1, keepdim=True)
    return maps / torch.where(top > 0, top, torch.ones_like(top))


def structural_similarity(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """(N, 1, H, W) float64 pairs -> (N,) mean SSIM over the windows inside the map."""
    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, WINDOW, stride=1)

    covariance = WINDOW**2 / (WINDOW**2 - 1)
    ua, ub = mean(a), mean(b)
    va, vb = covariance * (mean(a * a) - ua * ua), covariance * (mean(b * b) - ub * ub)
    vab = covariance * (mean(a * b) - ua * ub)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    return s.flatten(1).mean(dim=1)
