"""IG-NORM (Chen et al., NeurIPS 2019): CE(x) + weight * ||IG(x, x*)||_1, x* = argmax_{x' in B(x, eps)} ||IG(x, x')||_1.

As the reference code: x* from PGD on the IG norm alone, computed with ig_steps / approx_factor points; the outer
term uses all ig_steps points and is differentiated with respect to the weights (second order). With
`reduction: sum` (the reference) both CE and the norm are summed over the batch. `weight` is the paper's lambda
(reference: 1 on MNIST and Fashion-MNIST, 1 on GTSRB, 0.1 on Flower).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, reduce
from attrobust.regularizers.ig_terms import IGObjective


@REGULARIZERS.register("ig_norm")
@dataclass(frozen=True)
class IGNorm(IGObjective):
    weight: float = 1.0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.inner_maximum(lambda z: self.ig_norm(model, x, z, y, inner=True), x)
        logits = model(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        norm = self.ig_norm(model, x, x_adv, y, inner=False)
        with torch.no_grad():
            acc_adv = (model(x_adv).argmax(1) == y).float().mean()
        terms = {"ce": ce.detach().mean(), "ig_l1": norm.detach().mean(), "acc_adv": acc_adv,
                 "eps": x.new_full((), self.eps)}
        return LossOutput(reduce(ce + self.weight * norm, self.reduction), logits, terms)
