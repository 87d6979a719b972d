"""PGD on the prediction (Madry et al., ICLR 2018): accuracy under an L-inf attack on the cross-entropy.

Threat model: ||x' - x||_inf <= eps in [0, 1] pixel units, x' in [0, 1]. Per-dataset settings live in
`conf/dataset/*.yaml` (`eps`, `pgd.steps`, `pgd.step_size`; MNIST 0.3, 40 x 0.01 as in the reference code).
With `restarts` > 1 an example counts as robust only if every restart fails (the worst case).

Shapes: x (B, C, H, W) float32 in [0, 1], y (B,) int64 -> robust (B,) bool.

Example: `attrobust evaluate checkpoint=outputs/train/<run> attack.steps=100 attack.restarts=5`
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attacks import PREDICTION_ATTACKS
from attrobust.attacks.projected_ascent import LinfBall, check_pgd_settings, pgd, pixel_amount


@PREDICTION_ATTACKS.register("pgd")
@dataclass(frozen=True)
class PGDAttack:
    eps: float
    steps: int
    step_size: float
    random_start: bool = True
    restarts: int = 1

    def __post_init__(self) -> None:
        check_pgd_settings(self.eps, self.steps, self.step_size)
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")

    def describe(self) -> str:
        restarts = f" x{self.restarts} restarts" if self.restarts > 1 else ""
        return f"pgd eps={pixel_amount(self.eps)} {self.steps}x{pixel_amount(self.step_size)}{restarts}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """One PGD run maximising the per-example cross-entropy of `model` at the labels `y`."""
        return pgd(lambda z: F.cross_entropy(model(z), y, reduction="none"), LinfBall(x, self.eps),
                   self.steps, self.step_size, self.random_start)

    def robust(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Per-example bool: classified correctly when clean and after every restart."""
        with torch.inference_mode():
            robust = model(x).argmax(dim=1) == y
        for _ in range(self.restarts):
            x_adv = self.perturb(model, x, y)
            with torch.inference_mode():
                robust = robust & (model(x_adv).argmax(dim=1) == y)
        return robust
