"""Max-sensitivity (Yeh et al., NeurIPS 2019), as Quantus 0.6 computes it (`MaxSensitivity` with its defaults):
the largest over `samples` uniform draws x' = x + U(-radius, radius)^D of ||a(x) - a(x')||_2 / ||a(x)||_2, the
attributions flattened per image (no normalisation, no absolute value; radius: Quantus's `lower_bound` 0.2)."""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from attrobust.stability import STABILITY
from attrobust.stability.base import Reduction, StabilityMetric, flat_norm


@dataclass(frozen=True)
class Sensitivity(StabilityMetric):
    radius: float = 0.2
    unit: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.radius < math.inf:
            raise ValueError(f"radius must be positive and finite (pixels are in [0, 1]), got {self.radius}")

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        return (2 * torch.rand(tuple(shape), generator=generator, dtype=torch.float64) - 1) * self.radius

    def score(self, x: Tensor, x_perturbed: Tensor, a: Tensor, a_perturbed: Tensor, logits: Tensor,
              logits_perturbed: Tensor) -> Tensor:
        return flat_norm(a - a_perturbed) / flat_norm(a)


@STABILITY.register("max_sensitivity")
@dataclass(frozen=True)
class MaxSensitivity(Sensitivity):
    heading: ClassVar[str] = "max-sens"
    reduction: ClassVar[Reduction] = "max"
