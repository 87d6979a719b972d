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
from torch import Tensor

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.linear_fit import CoalitionExplainer

EXTREME_WEIGHT = 1e6  # Captum's weight of the all-kept and all-removed coalitions


@EXPLAINERS.register("kernel_shap")
@dataclass(frozen=True)
class KernelShapExplainer(CoalitionExplainer):
    fewest_samples = 3

    def coalitions(self, features: int) -> Tensor:
        """(samples, M) long: all kept, all removed, then the seeded draws from the Shapley kernel."""
        generator = torch.Generator().manual_seed(self.seed)
        sizes = torch.arange(1, features, dtype=torch.float64)
        chances = (features - 1) / (sizes * (features - sizes))
        drawn = 1 + torch.multinomial(chances, self.samples - 2, replacement=True, generator=generator)
        order = torch.rand((self.samples - 2, features), generator=generator).argsort(dim=1)
        kept = (order < drawn[:, None]).long()  # the first k of a random permutation
        return torch.cat([torch.ones(1, features, dtype=torch.long), torch.zeros(1, features, dtype=torch.long), kept])

    def sample_weights(self, x: Tensor, kept: Tensor, masks: Tensor) -> Tensor:
        weights = torch.ones(len(kept), len(x), dtype=x.dtype, device=x.device)
        weights[:2] = EXTREME_WEIGHT
        return weights
