"""PGD on the prediction in an L2 ball (Madry et al., ICLR 2018, the L2 variant): steps along the normalised
gradient of the cross-entropy, projected onto {||x' - x||_2 <= eps} and the pixel box [0, 1] (the box after the ball:
the common approximation of their intersection, as torchattacks' PGDL2). The attack that certificates of 1-Lipschitz
networks are checked against (a certified image must never be broken by it at the same radius).

Shapes: x (B, C, H, W) float32 in [0, 1], y (B,) int64 -> robust (B,) bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attacks import PREDICTION_ATTACKS
from attrobust.attacks.projected_ascent import L2Ball, check_pgd_settings, pgd


@PREDICTION_ATTACKS.register("pgd_l2")
@dataclass(frozen=True)
class PGDL2Attack:
    eps: float
    steps: int = 40
    step_size: float | None = None  # None: 2.5 eps / steps (Madry et al.'s rule)
    random_start: bool = True

    def __post_init__(self) -> None:
        check_pgd_settings(self.eps, self.steps, self.step_size if self.step_size is not None else 1.0,
                           linf=False)

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(self.steps, 1)

    def describe(self) -> str:
        return f"pgd_l2 eps={self.eps:g} {self.steps}x{self.step:g}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return pgd(lambda z: F.cross_entropy(model(z), y, reduction="none"), L2Ball(x, self.eps), self.steps,
                   self.step, self.random_start)

    def robust(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.inference_mode():
            robust = model(x).argmax(dim=1) == y
        x_adv = self.perturb(model, x, y)
        with torch.inference_mode():
            return robust & (model(x_adv).argmax(dim=1) == y)
