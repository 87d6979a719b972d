"""LENS recall (Kamath et al., AAAI 2024): |W(o) n p| / k, the share of the perturbed top-k pixels that lie near
an original top-k pixel.

`window`: the neighbourhood side in pixels (3: 3x3, as the paper; 5 and 7 are its other variants; 1: the top-k
intersection); `diverse`: compare diverse top-k sets instead (the reference's "-div"). See `attrobust.metrics.lens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from attrobust.metrics import METRICS
from attrobust.metrics.lens import LensMetric


@METRICS.register("lens_recall")
@dataclass(frozen=True)
class LensRecall(LensMetric):
    heading = "LENS-R"
    side = 0
