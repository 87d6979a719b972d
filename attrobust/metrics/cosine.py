"""Cosine similarity of the original and perturbed maps, <a, b> / (|a| |b|), in float64 (1: same direction).
Two all-zero maps are identical (1); one all-zero map against another map gives 0."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric


@METRICS.register("cosine")
@dataclass(frozen=True)
class Cosine(Metric):
    heading = "cos"
    symmetric = True

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        a, b = original.detach().to(torch.float64), perturbed.detach().to(torch.float64)
        norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
        both_zero = (a == 0).all(1) & (b == 0).all(1)
        cosine = (a * b).sum(1) / torch.where(norms > 0, norms, torch.ones_like(norms))
        return torch.where(both_zero, torch.ones_like(cosine), cosine)
