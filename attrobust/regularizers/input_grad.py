"""Input-gradient penalty (Ross & Doshi-Velez, AAAI 2018): CE(x) + weight * 0.5 * ||gradient||_2^2, double backprop.

The penalty is differentiated with respect to the weights. Which gradient is penalised (`gradient_of`):
- `mean_loss`: as Ross & Doshi-Velez's code (`l2_double_backprop` in `neural_network.py`: `tf.nn.l2_loss` of
  `tf.gradients(reduce_mean(CE), X)`): the gradient of the batch-mean cross-entropy with respect to the whole
  batch, whose row i is grad_{x_i} CE_i / B, so the penalty is 0.5 * ||d mean_batch CE / dX||^2
  = (1 / B^2) * sum_i 0.5 * ||grad_{x_i} CE_i||^2, one number per batch. With `reduction: mean` the loss is exactly
  theirs, mean CE + lambda * that penalty, and `weight` is their lambda (`l2dbl`, swept over 1e2..1e5 at batch 256).
- `per_example` (the default of `reg=input_grad`): each example's own 0.5 * ||grad_{x_i} CE_i||^2, reduced over the
  batch like CE; the penalty does not depend on the batch size. With `reduction: mean` a per-example `weight` w
  equals a mean-loss lambda of w * B (B the batch size), so their lambda = 1e4 at batch 256 is w = 39.06.
`reduction: sum` (the RAR reference's convention) multiplies the whole loss by B in either mode. The RAR paper shows
the per-example form is IG-NORM with a one-point IG and the L2 size function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, Objective, reduce

GradientOf = Literal["per_example", "mean_loss"]
GRADIENTS_OF: tuple[GradientOf, ...] = ("per_example", "mean_loss")


@REGULARIZERS.register("input_grad")
@dataclass(frozen=True)
class InputGradient(Objective):
    weight: float = 10.0  # conf/reg/input_grad.yaml says why
    gradient_of: GradientOf = "per_example"
    second_order: ClassVar[bool] = True  # double backprop: runs the eager model

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gradient_of not in GRADIENTS_OF:
            raise ValueError(f"gradient_of must be one of {', '.join(GRADIENTS_OF)}, got '{self.gradient_of}'")
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    @property
    def couples_the_batch(self) -> bool:
        """True when the penalty is a whole-batch quantity (it cannot be split over processes by examples)."""
        return self.gradient_of == "mean_loss"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(ce.sum(), x, create_graph=True)  # row i: grad_{x_i} CE_i
        half_squared = 0.5 * grad.pow(2).flatten(1).sum(1)
        # mean_loss: each example's share of 0.5 * ||grad / B||^2, so that the mean over the batch is that penalty
        penalty = half_squared / len(x) if self.gradient_of == "mean_loss" else half_squared
        terms = {"ce": ce.detach().mean(), "grad_sq": half_squared.detach().mean()}
        return LossOutput(reduce(ce + self.weight * penalty, self.reduction), logits, terms)
