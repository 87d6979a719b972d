"""LIME (Ribeiro, Singh, Guestrin, KDD 2016) as Captum's `Lime`: a weighted linear surrogate of the target's logit on
superpixel coalitions. Each of `samples` coalitions keeps each superpixel with probability 1/2 (Captum's default
sampling) and sets the others to `baseline`; a coalition's weight is exp(-d^2 / (2 kernel_width^2)) with d the cosine
distance between the image and the masked image (Captum's default similarity, kernel width 1); the fit is ridge
regression with an intercept, sklearn's `Ridge(alpha)`.

Where we differ from Captum's default: its interpretable model is `Lasso(alpha=0.01)`, which has no closed form to
fit every image in one batched solve; ridge (`alpha`, default 1.0 as the `lime` package's `Ridge`) does, and the
oracle is Captum's `Lime` with `SkLearnRidge(alpha)` on the same coalitions. Superpixels are a grid of `cell` x
`cell` squares (the lime package's quickshift segmentation is not used: its result is not pinned across versions).
The coalitions are seeded (`seed`) and shared by all images, so an image's map does not depend on its batch.
Passes per image: `samples`; forward passes only, so not differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.linear_fit import CoalitionExplainer


@EXPLAINERS.register("lime")
@dataclass(frozen=True)
class LimeExplainer(CoalitionExplainer):
    kernel_width: float = 1.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.kernel_width > 0 and self.alpha >= 0):
            raise ValueError(f"kernel_width must be > 0 and alpha >= 0, got {self.kernel_width} and {self.alpha}")

    @property
    def ridge(self) -> float:
        return self.alpha

    def coalitions(self, features: int) -> Tensor:
        """(samples, M) long: each superpixel kept with probability 1/2, seeded."""
        generator = torch.Generator().manual_seed(self.seed)
        return (torch.rand((self.samples, features), generator=generator) < 0.5).long()

    def sample_weights(self, x: Tensor, kept: Tensor, masks: Tensor) -> Tensor:
        return similarity(x, masks, self.baseline, self.kernel_width)


def similarity(x: Tensor, masks: Tensor, baseline: float, kernel_width: float) -> Tensor:
    """(S, B) exp(-d^2 / (2 width^2)), d = 1 - cos(x, x masked): Captum's default kernel, from binary (S, 1, H, W)
    masks by matrix products (m^2 = m, m (1 - m) = 0), without building the masked images."""
    kept = masks.expand(-1, x.shape[1], -1, -1).flatten(1)            # (S, D)
    flat = x.flatten(1)                                                # (B, D)
    squares = flat ** 2
    dot = kept @ squares.T + baseline * (1 - kept) @ flat.T          # (S, B): <x masked, x>
    masked_norm = (kept @ squares.T + baseline ** 2 * (1 - kept).sum(1, keepdim=True)).sqrt()
    cosine = dot / (masked_norm * squares.sum(1).sqrt()).clamp(min=1e-8)
    return torch.exp(-((1 - cosine) ** 2) / (2 * kernel_width ** 2))
