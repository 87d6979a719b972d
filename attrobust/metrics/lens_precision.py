"""LENS precision (Kamath et al., AAAI 2024): |o n W(p)| / k, the share of the original top-k pixels that lie
near a perturbed top-k pixel.

`window`: the neighbourhood side in pixels (3: 3x3, as the paper; 5 and 7 are its other variants; 1: the top-k
intersection); `diverse`: compare diverse top-k sets instead (the reference's "-div"). See `attrobust.metrics.lens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from attrobust.metrics import METRICS
from attrobust.metrics.lens import LensMetric


@METRICS.register("lens_precision")
@dataclass(frozen=True)
class LensPrecision(LensMetric):
    heading = "LENS-P"
    side = 1
