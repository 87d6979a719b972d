"""The stability contract and its batched driver.

A metric (a frozen dataclass; its fields are its settings) says how one perturbation of an image is drawn
(`draw_noise`), how one draw is scored (`score`: from the image x, its perturbation x', their attributions a, a' and
logits h, h', one float64 value per image) and how the draws are reduced (`reduce`: max or mean). `estimate` runs
it for a batch: every draw of every image is explained in batches of `rows` rows (draws x images in one explainer
call, no per-image loop), and each image's noise comes from its own generator, seeded by (seed, image id), so an
image's value does not depend on the batch it is in (tested: batched = one image at a time).

As Quantus: x' = x + noise computed in float64 and cast back to the input's dtype, not clipped to the pixel range;
the attributions are the explainer's raw output (no normalisation, no absolute value: Quantus's defaults for these
metrics except the local Lipschitz estimate, see its file); with `nan_on_prediction_change` a draw whose predicted
class differs from the image's scores NaN and so does the image (Quantus's `return_nan_when_prediction_changes`
with its final np.max), otherwise such draws count like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from attrobust.explainers.base import Explainer
from attrobust.measures import Measure

Reduction = Literal["max", "mean"]


@dataclass(frozen=True)
class StabilityMetric(Measure):
    samples: int = 200
    family: ClassVar[str] = "stability"
    higher_is_better: ClassVar[bool] = False  # every stability metric here measures change: lower is more stable
    reduction: ClassVar[Reduction] = "max"
    divides_by_pixels: ClassVar[bool] = False  # the input's change is taken relative to each pixel's value

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    def passes(self) -> dict[str, int]:
        """The image and each of its `samples` draws: a forward pass (the logits) and an explainer call each."""
        return {"forward": self.samples + 1, "explainer": self.samples + 1}

    @property
    def nan_on_prediction_change(self) -> bool:
        return False

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        """`shape` = (samples, C, H, W) float64 noise for one image."""
        raise NotImplementedError

    def score(self, x: Tensor, x_perturbed: Tensor, a: Tensor, a_perturbed: Tensor, logits: Tensor,
              logits_perturbed: Tensor) -> Tensor:
        """One float64 value per row of the batch (rows: one draw of one image each)."""
        raise NotImplementedError


@dataclass(frozen=True)
class StabilityResult:
    values: Tensor        # (N,) float64, one per image
    per_draw: Tensor      # (N, samples) float64 scores before the reduction (NaN: prediction changed, if refused)
    changed: Tensor       # (N, samples) bool: the draw changed the predicted class


def image_seed(seed: int, image_id: int) -> int:
    digest = hashlib.sha256(f"stability:{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def perturbations(metric: StabilityMetric, x: Tensor, ids: Sequence[int], seed: int) -> Tensor:
    """(samples, N, C, H, W): every perturbed input x' = x + noise (float64 sum cast to x's dtype), each image's
    draws from its own generator; what `estimate` scores, and what a figure can show."""
    noise = torch.stack([metric.draw_noise((metric.samples, *x.shape[1:]),
                                           torch.Generator().manual_seed(image_seed(seed, int(i)))) for i in ids], 1)
    return (x.detach().to(torch.float64).cpu() + noise).to(x.dtype).to(x.device)


def estimate(metric: StabilityMetric, model: nn.Module, explainer: Explainer, x: Tensor, y: Tensor,
             ids: Sequence[int], seed: int, rows: int = 256) -> StabilityResult:
    """The metric's value for each image of the batch `x` (targets `y`, test-split `ids`), explaining `rows`
    perturbed inputs per explainer call."""
    samples, n = metric.samples, len(x)
    perturbed = perturbations(metric, x, ids, seed).flatten(0, 1)  # row s * n + i: draw s of image i
    with torch.no_grad():
        logits = model(x)
    a = explainer.explain(model, x, y).detach()
    scores, changed = [], []
    for start in range(0, samples * n, rows):
        part = perturbed[start:start + rows]
        image = torch.arange(start, start + len(part), device=x.device) % n
        with torch.no_grad():
            logits_part = model(part)
        a_part = explainer.explain(model, part, y[image]).detach()
        scores.append(metric.score(x[image], part, a[image], a_part, logits[image], logits_part))
        changed.append(logits_part.argmax(1) != logits[image].argmax(1))
    per_draw = torch.cat(scores).view(samples, n).T.contiguous()
    moved = torch.cat(changed).view(samples, n).T.contiguous()
    if metric.nan_on_prediction_change:
        per_draw = per_draw.masked_fill(moved, float("nan"))
    values = per_draw.amax(1) if metric.reduction == "max" else per_draw.mean(1)
    if metric.nan_on_prediction_change:  # amax / mean propagate NaN: an image with a changed draw is NaN
        values = torch.where(moved.any(1), torch.full_like(values, float("nan")), values)
    return StabilityResult(values, per_draw, moved)


def flat_norm(t: Tensor) -> Tensor:
    """The L2 norm of each row's entries, in float64."""
    return t.to(torch.float64).flatten(1).norm(dim=1)
