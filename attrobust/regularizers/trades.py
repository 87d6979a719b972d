"""TRADES (Zhang et al., ICML 2019, "Theoretically Principled Trade-off between Robustness and Accuracy"), as the
authors' code (github.com/yaodongyu/TRADES, `trades.py`) computes it:

    loss = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x')),   per example, averaged over the batch,
    x' = the L-inf eps-ball point that maximises that KL: from x + 0.001 N(0, 1), `steps` signed-gradient steps of
         `step_size`, each projected onto the ball (clip to x +- eps) and the pixel box.

The KL target softmax f(x) is not detached in the outer loss: its gradient reaches the weights through both terms,
as in the authors' code. Their defaults: MNIST eps 0.3, 40 steps of 0.01, beta 1.0 (CIFAR-10: 8/255, 10 x 2/255,
beta 6.0); they divide the summed KL by the nominal batch size, attrobust by the batch's own (the same on full
batches).

What is uncertain: the inner maximisation runs on the model in its current (training) mode, as the authors' current
`trades.py` does; an earlier version of their MNIST script switched the model to eval mode for it. Their code computes
f(x) anew at every inner step and twice in the outer loss; with dropout in training mode each of those draws its own
mask, while attrobust computes f(x) once for the inner maximisation and once for the outer loss (for models without
dropout, such as every registered one, the same numbers).

Deliberate difference: none by default (`eps_warmup_epochs: 0`, the authors' value; a warm-up is one override away).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attacks.projected_ascent import LinfBall, pgd
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput, Reduction, reduce


def kl_per_example(clean_logits: Tensor, perturbed_logits: Tensor) -> Tensor:
    """KL(softmax(clean) || softmax(perturbed)) of each example (B,), as torch's KLDivLoss summed over classes."""
    return F.kl_div(F.log_softmax(perturbed_logits, dim=1), F.softmax(clean_logits, dim=1),
                    reduction="none").sum(dim=1)


@REGULARIZERS.register("trades")
@dataclass(frozen=True, kw_only=True)
class TRADES(AdversarialObjective):
    beta: float = 1.0           # the authors' MNIST value (CIFAR-10: 6.0)
    start_sigma: float = 0.001  # the inner maximisation starts at x + start_sigma * N(0, 1) (random_start)
    reduction: Reduction = "mean"  # the authors' mean over the batch
    eps_warmup_epochs: int = 0  # the authors' code has none

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.beta < math.inf):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not (0 <= self.start_sigma < math.inf):
            raise ValueError(f"start_sigma must be a finite number >= 0, got {self.start_sigma}")

    def perturbed(self, model: nn.Module, x: Tensor) -> Tensor:
        """x': the point of the eps-ball around x where f's prediction moves furthest from f(x) in KL (detached)."""
        with torch.no_grad():
            clean = model(x)
        start = x.detach() + self.start_sigma * torch.randn_like(x) if self.random_start else x.detach().clone()
        return pgd(lambda z: kl_per_example(clean, model(z)), LinfBall(x, self.eps), self.steps, self.step_size,
                   start=start)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.perturbed(model, x)
        logits = model(x)
        adv_logits = model(x_adv)
        ce = F.cross_entropy(logits, y, reduction="none")
        kl = kl_per_example(logits, adv_logits)
        terms = {"ce": ce.detach().mean(), "kl": kl.detach().mean(),
                 "acc_adv": (adv_logits.detach().argmax(1) == y).float().mean(), "eps": x.new_full((), self.eps)}
        return LossOutput(reduce(ce + self.beta * kl, self.reduction), logits.detach(), terms)
