"""Kendall's tau-b between the original and perturbed maps (CO in the RAR paper; equal to scipy.stats.kendalltau).
A constant map scores 1 if both maps are equal, else 0 (scipy: NaN). The math is
`attrobust.metrics.ranks.kendall_tau_b` (with ties, no Python loop)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.ranks import kendall_of_maps


@METRICS.register("kendall")
@dataclass(frozen=True)
class Kendall(Metric):
    heading = "CO"
    symmetric = True

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return kendall_of_maps(original, perturbed)
