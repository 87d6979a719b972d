"""Pearson correlation of the original and perturbed maps, in float64 (equal to numpy.corrcoef / scipy.stats.pearsonr).

Where it is undefined (a constant map; numpy and scipy give NaN): 1 if both maps are equal, else 0 (no association).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.ranks import defined_for_constant_maps


@METRICS.register("pearson")
@dataclass(frozen=True)
class Pearson(Metric):
    heading = "Pearson"
    symmetric = True

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        a, b = original.detach().to(torch.float64), perturbed.detach().to(torch.float64)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        r = (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))
        return defined_for_constant_maps(r, original, perturbed)
