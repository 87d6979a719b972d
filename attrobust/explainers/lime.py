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
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, rows_per_pass
from attrobust.explainers.linear_fit import grid_features, masked_scores, weighted_linear_fit
from attrobust.explainers.perturbation import refuse_create_graph


@EXPLAINERS.register("lime")
@dataclass(frozen=True)
class LimeExplainer(Explainer):
    samples: int = 200
    cell: int = 4
    baseline: float = 0.0
    kernel_width: float = 1.0
    alpha: float = 1.0
    seed: int = 0
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        if self.samples < 2 or self.cell < 1:
            raise ValueError(f"samples must be >= 2 and cell >= 1, got {self.samples} and {self.cell}")
        if not (self.kernel_width > 0 and self.alpha >= 0):
            raise ValueError(f"kernel_width must be > 0 and alpha >= 0, got {self.kernel_width} and {self.alpha}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {self.seed}")
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.samples

    def coalitions(self, features: int) -> Tensor:
        """(samples, M) long: each superpixel kept with probability 1/2, seeded."""
        generator = torch.Generator().manual_seed(self.seed)
        return (torch.rand((self.samples, features), generator=generator) < 0.5).long()

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        x = x.detach()
        features = grid_features(*x.shape[-2:], self.cell, x.device)
        kept = self.coalitions(int(features.max()) + 1).to(x.device)
        scores, masks = masked_scores(model, x, target, kept, features, self.baseline,
                                      rows_per_pass(self.max_points, x))
        weights = similarity(x, masks, self.baseline, self.kernel_width)
        coefficients = weighted_linear_fit(kept, scores, weights, alpha=self.alpha)
        return coefficients[:, features].unsqueeze(1).expand_as(x).contiguous()

    def describe(self) -> str:
        return f"lime({self.samples}, cell {self.cell})"


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
