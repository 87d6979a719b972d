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
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput, reduce
from attrobust.regularizers.ig_terms import approximate_steps, ig_l1


@REGULARIZERS.register("ig_norm")
@dataclass(frozen=True)
class IGNorm(AdversarialObjective):
    weight: float = 1.0
    ig_steps: int = 50
    approx_factor: int = 5
    max_points: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        approximate_steps(self.ig_steps, self.approx_factor)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        inner = approximate_steps(self.ig_steps, self.approx_factor)
        x_adv = self.inner_maximum(lambda z: ig_l1(model, x, z, y, inner, create_graph=True,
                                                   max_points=self.max_points), x)
        logits = model(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        norm = ig_l1(model, x, x_adv, y, self.ig_steps, create_graph=True, max_points=self.max_points)
        with torch.no_grad():
            acc_adv = (model(x_adv).argmax(1) == y).float().mean()
        terms = {"ce": ce.detach().mean(), "ig_l1": norm.detach().mean(), "acc_adv": acc_adv,
                 "eps": torch.tensor(self.eps)}
        return LossOutput(reduce(ce + self.weight * norm, self.reduction), logits, terms)
