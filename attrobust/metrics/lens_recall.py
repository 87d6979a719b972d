"""LENS recall (Kamath et al., AAAI 2024): |W(o) n p| / k, the share of the perturbed top-k pixels that lie near
an original top-k pixel.

`window`: the neighbourhood side in pixels (3: 3x3, as the paper; 5 and 7 are its other variants; 1: the top-k
intersection); `diverse`: compare diverse top-k sets instead (the reference's "-div"). See `attrobust.metrics.lens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.metrics import METRICS
from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.lens import check_window, lens_scores


@METRICS.register("lens_recall")
@dataclass(frozen=True)
class LensRecall(Metric):
    registry_name = "lens_recall"
    heading = "LENS-R"
    unit = "%"
    window: int = 3
    diverse: bool = False
    candidates_per_k: int = 6

    def __post_init__(self) -> None:
        check_window(self.window)
        if self.candidates_per_k < 1:
            raise ValueError(f"candidates_per_k must be >= 1, got {self.candidates_per_k}")

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return lens_scores(original, perturbed, maps, self.window, self.diverse, self.candidates_per_k)[0]
