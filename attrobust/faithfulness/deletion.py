"""Deletion (Petsiuk et al., RISE): the area under the label's probability as the most important pixels are set to
the baseline (default 0, RISE's deletion substrate), most important first. Lower is more faithful."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from attrobust.faithfulness import FAITHFULNESS
from attrobust.faithfulness.base import Baseline, FaithfulnessMetric


@FAITHFULNESS.register("deletion")
@dataclass(frozen=True)
class Deletion(FaithfulnessMetric):
    baseline: Baseline = "zero"
    heading: ClassVar[str] = "deletion"
    higher_is_better: ClassVar[bool] = False
    inserts: ClassVar[bool] = False
