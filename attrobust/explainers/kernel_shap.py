"""KernelSHAP (Lundberg and Lee, NeurIPS 2017) as Captum's `KernelShap`: Shapley values of superpixels estimated by
a weighted linear regression on coalitions. The coalitions are the all-kept and all-removed ones (weight 1e6, as
Captum) and `samples - 2` draws of k ~ p(k) = (M - 1) / (k (M - k)) kept superpixels chosen uniformly (weight 1),
which samples the Shapley kernel; the model scores are the target's logit with the removed superpixels set to
`baseline`, and the fit is sklearn's `LinearRegression` with an intercept (Captum's interpretable model).

Superpixels are a grid of `cell` x `cell` squares over all channels (Captum takes any feature mask; the study's
superpixel algorithm is not pinned, so a grid it is). The coalitions come from a generator seeded with `seed` at every
call and are shared by all images, so an image's map does not depend on its batch (Captum draws per image); every
image is fitted in one batched solve. A superpixel's value is spread over its pixels in every channel, as Captum's
`return_input_shape`. Passes per image: `samples`; forward passes only, so not differentiable.
Oracle: Captum's `KernelShap` on the same coalitions (tests/test_perturbation_explainers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, rows_per_pass
from attrobust.explainers.linear_fit import grid_features, masked_scores, weighted_linear_fit
from attrobust.explainers.perturbation import refuse_create_graph

EXTREME_WEIGHT = 1e6  # Captum's weight of the all-kept and all-removed coalitions


@EXPLAINERS.register("kernel_shap")
@dataclass(frozen=True)
class KernelShapExplainer(Explainer):
    samples: int = 200
    cell: int = 4
    baseline: float = 0.0
    seed: int = 0
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        if self.samples < 3 or self.cell < 1:
            raise ValueError(f"samples must be >= 3 and cell >= 1, got {self.samples} and {self.cell}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {self.seed}")
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.samples

    def coalitions(self, features: int) -> Tensor:
        """(samples, M) long: all kept, all removed, then the seeded draws from the Shapley kernel."""
        generator = torch.Generator().manual_seed(self.seed)
        sizes = torch.arange(1, features, dtype=torch.float64)
        chances = (features - 1) / (sizes * (features - sizes))
        drawn = 1 + torch.multinomial(chances, self.samples - 2, replacement=True, generator=generator)
        order = torch.rand((self.samples - 2, features), generator=generator).argsort(dim=1)
        kept = (order < drawn[:, None]).long()  # the first k of a random permutation
        return torch.cat([torch.ones(1, features, dtype=torch.long), torch.zeros(1, features, dtype=torch.long), kept])

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        x = x.detach()
        features = grid_features(*x.shape[-2:], self.cell, x.device)
        kept = self.coalitions(int(features.max()) + 1).to(x.device)
        weights = torch.ones(len(kept), len(x), dtype=x.dtype, device=x.device)
        weights[:2] = EXTREME_WEIGHT
        scores, _ = masked_scores(model, x, target, kept, features, self.baseline, rows_per_pass(self.max_points, x))
        coefficients = weighted_linear_fit(kept, scores, weights, alpha=0.0)  # (B, M)
        return coefficients[:, features].unsqueeze(1).expand_as(x).contiguous()

    def describe(self) -> str:
        return f"kernel_shap({self.samples}, cell {self.cell})"
