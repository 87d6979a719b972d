"""Relative input stability (Agarwal et al., NeurIPS 2022), as Quantus 0.6 computes it (`RelativeInputStability`):
the largest over `samples` draws x' = x + U(low, high)^D (positive noise, Quantus's 0.02 and 0.2) of

    ||(a - a') / (a + 1e-6 [a == 0])||_2 / max-guard(||(x - x') / (x + 1e-6 [x == 0])||_2),

norms over all entries of an image and the denominator replaced by 1e-6 where it is 0; a draw that changes the
predicted class makes the image's value NaN (Quantus's default `return_nan_when_prediction_changes`).

Caveat: the input's relative change divides by each pixel's value, and by 1e-6 where it is 0, so dark pixels
dominate it (81 % of mnist_mini's test pixels are exactly 0): the measure then mostly counts the noise on the
background, and can rank models unlike the other stability measures (issue 26 saw a PGD-trained MNIST model ranked
below a natural one, where the other measures rank it above). `evaluate` logs the share of pixels below 0.01 when it
runs; compare models with the other measures too. Quantus guards only exact zeros (and the norm at `eps_min`), and so
does this code: a larger guard would be another measure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from attrobust.stability import STABILITY
from attrobust.stability.base import Reduction, StabilityMetric, flat_norm

ZERO_GUARD = 1e-6  # Quantus's eps_min


def relative_change(before: Tensor, after: Tensor) -> Tensor:
    """||(before - after) / (before + 1e-6 [before == 0])||_2 per image, in float64."""
    before, after = before.to(torch.float64), after.to(torch.float64)
    return flat_norm((before - after) / (before + ZERO_GUARD * (before == 0)))


def guarded(denominator: Tensor) -> Tensor:
    return denominator + ZERO_GUARD * (denominator == 0)


@dataclass(frozen=True)
class RelativeStability(StabilityMetric):
    low: float = 0.02
    high: float = 0.2
    refuse_changed_predictions: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.low < self.high:
            raise ValueError(f"low and high must satisfy 0 <= low < high, got {self.low} and {self.high}")

    @property
    def nan_on_prediction_change(self) -> bool:
        return self.refuse_changed_predictions

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        return self.low + (self.high - self.low) * torch.rand(tuple(shape), generator=generator, dtype=torch.float64)


@STABILITY.register("relative_input_stability")
@dataclass(frozen=True)
class RelativeInputStability(RelativeStability):
    heading: ClassVar[str] = "RIS"
    reduction: ClassVar[Reduction] = "max"
    divides_by_pixels: ClassVar[bool] = True

    def score(self, x: Tensor, x_perturbed: Tensor, a: Tensor, a_perturbed: Tensor, logits: Tensor,
              logits_perturbed: Tensor) -> Tensor:
        return relative_change(a, a_perturbed) / guarded(relative_change(x, x_perturbed))
