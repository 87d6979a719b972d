"""Local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018), as Quantus 0.6 computes it (`LocalLipschitzEstimate`):
the largest over `samples` Gaussian draws x' = x + N(0, std^2)^D of ||a(x) - a(x')||_2 / (||x - x'||_2 + 1e-10).

Deliberate difference: Quantus's default for this metric (`normalise=True`) divides the attributions by one maximum
over the whole batch, so an image's value depends on the batch it is evaluated with; attrobust uses the raw
attributions, which is Quantus with `normalise=False`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from attrobust.stability import STABILITY
from attrobust.stability.base import Reduction, StabilityMetric, flat_norm

QUANTUS_DENOMINATOR_GUARD = 1e-10


@STABILITY.register("local_lipschitz")
@dataclass(frozen=True)
class LocalLipschitz(StabilityMetric):
    std: float = 0.1
    heading: ClassVar[str] = "local Lipschitz"
    reduction: ClassVar[Reduction] = "max"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float64) * self.std

    def score(self, x: Tensor, x_perturbed: Tensor, a: Tensor, a_perturbed: Tensor, logits: Tensor,
              logits_perturbed: Tensor) -> Tensor:
        return flat_norm(a - a_perturbed) / (flat_norm(x - x_perturbed) + QUANTUS_DENOMINATOR_GUARD)
