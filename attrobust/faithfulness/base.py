"""The faithfulness contract and its batched driver: insertion and deletion curves (Petsiuk et al., "RISE", BMVC
2018, as its public code `evaluation.py` computes them).

Pixels are ranked by the explanation (`importance`: the attributions summed over channels, signed as Quantus's
default `abs=False`; `absolute=true` ranks by sum |a|, the saliency of the attacks), most important first, ties in
pixel order. Point k of the curve (k = 0 .. steps) is the model's softmax probability of the image's label after the
first floor(k * H * W / steps) pixels (all channels) go from the `start` image to the `end` image: deletion starts at
x and ends at the baseline, insertion the reverse. The value is the area under the curve on [0, 1] by the trapezoid
rule, (sum - first / 2 - last / 2) / steps, as RISE's `auc`. When `steps` divides H * W the curve's points are RISE's
with `step = H * W / steps`, and deletion's points after the first are Quantus's `PixelFlipping` with
`features_in_step = H * W / steps` and baseline `black` (each image's minimum: 0 for these images) (tested).

Batched: every (image, point) pair is one row of a forward pass, `rows` rows per pass; no per-image loop.

Where this differs from RISE's code: the class is the label (RISE: the top-1 prediction; the same on the correctly
classified images scored here); ties in importance go in pixel order (RISE: numpy's unstable argsort); the baseline
is in [0, 1] pixels before the model's normalisation (RISE blurs and zeroes its normalised input, so its deletion
substrate is the dataset's mean colour; the same for datasets without normalisation, such as MNIST); `steps` that
does not divide H * W spreads the pixels over exactly `steps` steps (RISE: a last, shorter step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

from attrobust.measures import Measure

Baseline = Literal["zero", "blur", "mean"]
BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # RISE's `gkern(klen=11, nsig=5)` substrate for insertion


@dataclass(frozen=True)
class FaithfulnessMetric(Measure):
    steps: int = 28                 # points of the curve after the first (MNIST: 28 pixels per step)
    baseline: Baseline = "zero"     # what removed pixels become (deletion) or hidden ones are (insertion)
    absolute: bool = False          # rank pixels by sum_c |a| instead of sum_c a
    family: ClassVar[str] = "faithfulness"  # unit "": an area under a probability curve on [0, 1]
    inserts: ClassVar[bool] = False  # the curve goes from the baseline to the image

    def passes(self) -> dict[str, int]:
        """A forward pass per point of the curve; the map it orders the pixels by is the evaluation's (one explainer
        call per image, shared by every faithfulness metric)."""
        return {"forward": self.steps + 1, "explainer": 0}

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def check_fits(self, pixels: int) -> None:
        if self.steps > pixels:
            raise ValueError(f"steps={self.steps} is more than the {pixels} pixels of an image; choose steps <= "
                             f"{pixels}")

    def endpoints(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(start, end) images of the curve."""
        base = substrate(x, self.baseline)
        return (base, x) if self.inserts else (x, base)


def substrate(x: Tensor, baseline: Baseline) -> Tensor:
    """What a hidden pixel shows: 0, each image's channel means, or RISE's blur (`blur_kernel`, per channel, zero
    padding)."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    kernel = blur_kernel().to(x.dtype).to(x.device)
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, BLUR_SIZE, BLUR_SIZE)
    return F.conv2d(x, weight, padding=BLUR_SIZE // 2, groups=channels)


def blur_kernel() -> Tensor:
    """RISE's `gkern(11, 5)`: scipy's Gaussian filter (sigma 5, its reflecting border) of an 11 x 11 delta, float32."""
    delta = np.zeros((BLUR_SIZE, BLUR_SIZE))
    delta[BLUR_SIZE // 2, BLUR_SIZE // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, BLUR_SIGMA).astype(np.float32))


def importance(attributions: Tensor, absolute: bool = False) -> Tensor:
    """(B, C, H, W) attributions -> (B, H*W) float64 pixel importance."""
    values = attributions.to(torch.float64)
    return (values.abs() if absolute else values).sum(dim=1).flatten(1)


def pixel_counts(steps: int, pixels: int) -> Tensor:
    """Pixels moved at each point of the curve: floor(k * pixels / steps), k = 0 .. steps."""
    return torch.arange(steps + 1, dtype=torch.int64) * pixels // steps


def curves(metric: FaithfulnessMetric, model: nn.Module, x: Tensor, y: Tensor, attributions: Tensor,
           rows: int = 256) -> Tensor:
    """(B, steps + 1) float64: the probability of label y along each image's curve."""
    batch, _, height, width = x.shape
    pixels = height * width
    order = importance(attributions, metric.absolute).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(batch, pixels))
    start, end = metric.endpoints(x)
    counts = pixel_counts(metric.steps, pixels).to(x.device)
    points = metric.steps + 1
    values = []
    for first in range(0, batch * points, rows):
        pair = torch.arange(first, min(first + rows, batch * points), device=x.device)  # row = image * points + k
        image, k = pair // points, pair % points
        moved = (rank[image] < counts[k, None]).view(-1, 1, height, width)
        inputs = torch.where(moved, end[image], start[image])
        with torch.no_grad():
            probabilities = model(inputs).to(torch.float64).softmax(dim=1)
        values.append(probabilities.gather(1, y[image, None]).squeeze(1))
    return torch.cat(values).view(batch, points)


def area(curve: Tensor) -> Tensor:
    """(B, steps + 1) -> (B,): the trapezoid area on [0, 1], RISE's `auc`."""
    steps = curve.shape[1] - 1
    return (curve.sum(dim=1) - curve[:, 0] / 2 - curve[:, -1] / 2) / steps
