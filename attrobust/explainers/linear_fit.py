"""What LIME and KernelSHAP share (`CoalitionExplainer`): grid superpixels, the model's scores on images with some
superpixels set to a baseline, and a weighted linear fit with an intercept (sklearn's `Ridge` / `LinearRegression` in
closed form), all images at once: the coalitions are seeded and shared by the batch, so one design matrix serves every
image and an image's map does not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attrobust.errors import AttrobustError
from attrobust.explainers.base import Explainer, check_max_points, check_seed, rows_per_pass
from attrobust.explainers.perturbation import refuse_create_graph, target_scores


@dataclass(frozen=True)
class CoalitionExplainer(Explainer):
    """A linear surrogate of the target's logit over `cell` x `cell` superpixel coalitions: `samples` coalitions
    (`coalitions`) weighted per image (`sample_weights`) and fitted with a ridge penalty `ridge`; a superpixel's
    coefficient spread over its pixels in every channel (Captum's `return_input_shape`). Forward passes only."""
    family = "perturbation"

    samples: int = 200
    cell: int = 4
    baseline: float = 0.0
    seed: int = 0
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False
    fewest_samples: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if self.samples < self.fewest_samples or self.cell < 1:
            raise ValueError(f"samples must be >= {self.fewest_samples} and cell >= 1, got {self.samples} and "
                             f"{self.cell}")
        check_seed(self.seed)
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.samples

    @property
    def ridge(self) -> float:
        return 0.0

    def coalitions(self, features: int) -> Tensor:
        """(samples, M) long: 1 where a superpixel is kept."""
        raise NotImplementedError

    def sample_weights(self, x: Tensor, kept: Tensor, masks: Tensor) -> Tensor:
        """(samples, B): each coalition's weight in each image's fit."""
        raise NotImplementedError

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        x = x.detach()
        features = grid_features(*x.shape[-2:], self.cell, x.device)
        if int(features.max()) < 1:
            raise AttrobustError(f"explainer.cell={self.cell} makes one superpixel of the {x.shape[-2]} x "
                                 f"{x.shape[-1]} image, nothing to attribute between; choose a cell of at most "
                                 f"{max(1, max(x.shape[-2:]) // 2)}")
        kept = self.coalitions(int(features.max()) + 1).to(x.device)
        scores, masks = masked_scores(model, x, target, kept, features, self.baseline,
                                      rows_per_pass(self.max_points, x))
        coefficients = weighted_linear_fit(kept, scores, self.sample_weights(x, kept, masks), alpha=self.ridge)
        return coefficients[:, features].unsqueeze(1).expand_as(x).contiguous()

    def describe(self) -> str:
        return f"{self.registry_name}({self.samples}, cell {self.cell})"


def grid_features(height: int, width: int, cell: int, device: torch.device) -> Tensor:
    """(H, W) long: the index of the `cell` x `cell` square each pixel lies in, row-major (edge cells cut)."""
    columns = math.ceil(width / cell)
    rows = torch.arange(height, device=device) // cell
    cols = torch.arange(width, device=device) // cell
    return rows[:, None] * columns + cols[None, :]


def masked_scores(model: nn.Module, x: Tensor, target: Tensor, kept: Tensor, features: Tensor, baseline: float,
                  rows: int | None) -> tuple[Tensor, Tensor]:
    """(S, B) target logits on x with the superpixels that `kept` (S, M) marks 0 set to `baseline`, and the (S, 1,
    H, W) pixel masks."""
    pixel_masks = kept[:, features].unsqueeze(1).to(x.dtype)  # (S, 1, H, W)

    def masked(start: int, stop: int) -> Tensor:
        m = pixel_masks[start:stop].unsqueeze(1)
        return x.unsqueeze(0) * m + baseline * (1 - m)

    return target_scores(model, masked, len(kept), target, rows), pixel_masks


def weighted_linear_fit(design: Tensor, values: Tensor, weights: Tensor, alpha: float) -> Tensor:
    """(B, M) coefficients of sum_s w_sb (v_sb - c_b - z_s . beta_b)^2 + alpha |beta_b|^2 with a free intercept c_b
    for `design` z (S, M), `values` v (S, B) and sample weights w (S, B): sklearn's `Ridge(alpha)` (`LinearRegression`
    at alpha 0: a minimum-norm least-squares solution) with `sample_weight`, every image in one batched solve, in
    float64 (KernelSHAP's weights of 1e6 beside 1 would cost float32 digits) and returned in `values`' dtype."""
    dtype, values, weights = values.dtype, values.double(), weights.double()
    z = design.double().unsqueeze(0)                                # (1, S, M)
    w = weights.T.unsqueeze(-1)                                      # (B, S, 1)
    mean_z = (w * z).sum(1, keepdim=True) / w.sum(1, keepdim=True)  # (B, 1, M)
    v = values.T.unsqueeze(-1)                                       # (B, S, 1)
    mean_v = (w * v).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    a, y = w.sqrt() * (z - mean_z), w.sqrt() * (v - mean_v)
    if alpha > 0:
        eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        beta = torch.linalg.solve(a.transpose(1, 2) @ a + alpha * eye, a.transpose(1, 2) @ y)
    else:
        beta = torch.linalg.pinv(a) @ y
    return beta[..., 0].to(dtype)
