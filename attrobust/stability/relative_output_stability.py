"""Relative output stability (Agarwal et al., NeurIPS 2022), as Quantus 0.6 computes it (`RelativeOutputStability`):
relative input stability's numerator over ||h(x) - h(x')||_2, h the logits, with the same draws and the same NaN for
a draw that changes the predicted class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from attrobust.stability import STABILITY
from attrobust.stability.base import Reduction, flat_norm
from attrobust.stability.relative_input_stability import RelativeStability, guarded, relative_change


@STABILITY.register("relative_output_stability")
@dataclass(frozen=True)
class RelativeOutputStability(RelativeStability):
    heading: ClassVar[str] = "ROS"
    reduction: ClassVar[Reduction] = "max"

    def score(self, x: Tensor, x_perturbed: Tensor, a: Tensor, a_perturbed: Tensor, logits: Tensor,
              logits_perturbed: Tensor) -> Tensor:
        return relative_change(a, a_perturbed) / guarded(flat_norm(logits - logits_perturbed))
