"""Insertion (Petsiuk et al., RISE): the area under the label's probability as the most important pixels are revealed
on the baseline (default RISE's blurred image), most important first. Higher is more faithful."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from attrobust.faithfulness import FAITHFULNESS
from attrobust.faithfulness.base import Baseline, FaithfulnessMetric


@FAITHFULNESS.register("insertion")
@dataclass(frozen=True)
class Insertion(FaithfulnessMetric):
    baseline: Baseline = "blur"
    heading: ClassVar[str] = "insertion"
    higher_is_better: ClassVar[bool] = True
    inserts: ClassVar[bool] = True
