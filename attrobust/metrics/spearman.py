"""Spearman's rank correlation between the original and perturbed maps (equal to scipy.stats.spearmanr, ties
averaged; a constant map: 1 if both maps are equal, else 0, where scipy gives NaN). The math is
`attrobust.metrics.ranks.spearman_rho`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.ranks import spearman_of_maps


@METRICS.register("spearman")
@dataclass(frozen=True)
class Spearman(Metric):
    heading = "Spearman"
    symmetric = True

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return spearman_of_maps(original, perturbed)
