"""Avg-sensitivity (Yeh et al., NeurIPS 2019), as Quantus 0.6 computes it (`AvgSensitivity`): max-sensitivity's
score, averaged over the draws instead of maximised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from attrobust.stability import STABILITY
from attrobust.stability.base import Reduction
from attrobust.stability.max_sensitivity import Sensitivity


@STABILITY.register("avg_sensitivity")
@dataclass(frozen=True)
class AvgSensitivity(Sensitivity):
    heading: ClassVar[str] = "avg-sens"
    reduction: ClassVar[Reduction] = "mean"
