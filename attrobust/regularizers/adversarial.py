"""What every objective with an inner L-inf maximisation shares: the ball, the PGD settings and the eps warm-up.

PGD training, IG-NORM and IG-SUM-NORM each find x* in B(x, eps) with the one PGD loop
(`attrobust.attacks.projected_ascent.pgd`) and differ only in what x* maximises and in the outer loss.
`eps_warmup_epochs` (3 by default; not in the reference, which trains 100k steps: `reg.eps_warmup_epochs=0` restores
it) ramps eps linearly over the first epochs: eps * (epoch + 1) / warmup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

from torch import Tensor

from attrobust.attacks.projected_ascent import AttackObjective, LinfBall, check_pgd_settings, pgd
from attrobust.regularizers.base import Objective


@dataclass(frozen=True)
class AdversarialObjective(Objective):
    eps: float
    steps: int
    step_size: float
    random_start: bool = True
    eps_warmup_epochs: int = 3  # the reference: 0 (it trains 100k steps; the rar_* presets set 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pgd_settings(self.eps, self.steps, self.step_size)
        if self.eps_warmup_epochs < 0:
            raise ValueError(f"eps_warmup_epochs must be >= 0, got {self.eps_warmup_epochs}")

    def for_epoch(self, epoch: int) -> Self:
        if epoch >= self.eps_warmup_epochs:
            return self
        return dataclasses.replace(self, eps=self.eps * (epoch + 1) / self.eps_warmup_epochs, eps_warmup_epochs=0)

    def inner_maximum(self, objective: AttackObjective, x: Tensor) -> Tensor:
        """x* = argmax of `objective` over B(x, eps) by PGD (detached)."""
        return pgd(objective, LinfBall(x, self.eps), self.steps, self.step_size, self.random_start)
