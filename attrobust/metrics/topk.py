"""Top-k intersection between batches of maps (Ghorbani et al.; the RAR reference's `intersection`).

The share of the original map's k largest entries that are also among the perturbed map's k largest. Top-k sets are
the last k entries of a stable ascending argsort, i.e. `np.argsort(v, kind="stable")[-k:]`: among ties at the k-th
value the later indices are taken (the reference used numpy's default, unstable sort, which leaves that choice to the
sorting algorithm).

Shapes: (N, D) -> indices (N, k); intersection (N,) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric


def top_k_indices(v: Tensor, k: int) -> Tensor:
    if not 0 < k <= v.shape[1]:
        raise ValueError(f"k must be in 1..{v.shape[1]}, got {k}")
    return torch.sort(v, dim=1, stable=True).indices[:, -k:]


def top_k_mask(v: Tensor, k: int) -> Tensor:
    """(N, D) bool, True on each row's top-k entries."""
    return torch.zeros_like(v, dtype=torch.bool).scatter_(1, top_k_indices(v, k), True)


def topk_intersection(original: Tensor, perturbed: Tensor, k: int) -> Tensor:
    kept = top_k_mask(original, k).gather(1, top_k_indices(perturbed, k))
    return kept.sum(1).to(torch.float64) / k


@METRICS.register("topk_intersection")
@dataclass(frozen=True)
class TopKIntersection(Metric):
    """IN: the share of the original top-k pixels still in the perturbed top-k (k = the attack's eval_k)."""

    heading = "IN"
    symmetric = True
    unit = "%"

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return topk_intersection(original, perturbed, min(maps.k, original.shape[1]))
