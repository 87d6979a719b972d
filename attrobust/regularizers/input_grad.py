"""Input-gradient penalty (Ross & Doshi-Velez, AAAI 2018): CE(x) + weight * 0.5 * ||grad_x CE(x, y)||_2^2.

Double backpropagation: the penalty is differentiated with respect to the weights. Conventions, stated: the gradient
is of each example's own cross-entropy, and the penalty is half its squared L2 norm per example (as Ross &
Doshi-Velez's code, which sweeps the weight over 1e2..1e5); `reduction` (sum by default, like the RAR reference)
reduces CE and penalty over the batch alike. The RAR paper shows this is IG-NORM with a one-point IG and the L2 size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, Reduction, check_reduction, reduce


@REGULARIZERS.register("input_grad")
@dataclass(frozen=True)
class InputGradient:
    weight: float = 100.0
    reduction: Reduction = "sum"
    second_order: ClassVar[bool] = True  # double backprop: runs the eager model

    def __post_init__(self) -> None:
        check_reduction(self.reduction)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    def for_epoch(self, epoch: int) -> Self:
        return self

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(ce.sum(), x, create_graph=True)
        penalty = 0.5 * grad.pow(2).flatten(1).sum(1)
        terms = {"ce": ce.detach().mean(), "grad_sq": penalty.detach().mean()}
        return LossOutput(reduce(ce + self.weight * penalty, self.reduction), logits, terms)
