"""LENS precision (Kamath et al., AAAI 2024): |o n W(p)| / k, the share of the original top-k pixels that lie
near a perturbed top-k pixel.

`window`: the neighbourhood side in pixels (3: 3x3, as the paper; 5 and 7 are its other variants; 1: the top-k
intersection); `diverse`: compare diverse top-k sets instead (the reference's "-div"). See `attrobust.metrics.lens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.lens import check_window, lens_scores


@METRICS.register("lens_precision")
@dataclass(frozen=True)
class LensPrecision(Metric):
    registry_name = "lens_precision"
    heading = "LENS-P"
    unit = "%"
    window: int = 3
    diverse: bool = False
    candidates_per_k: int = 6

    def __post_init__(self) -> None:
        check_window(self.window)
        if self.candidates_per_k < 1:
            raise ValueError(f"candidates_per_k must be >= 1, got {self.candidates_per_k}")

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return lens_scores(original, perturbed, maps, self.window, self.diverse, self.candidates_per_k)[1]
