"""SGD with momentum. The reference code trains the GTSRB and Flower ResNets with momentum 0.9, wd 2e-4."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from attrobust.optim import OPTIMIZERS
from attrobust.optim.schedules import Milestones, check_rates, check_schedule, learning_rate


@OPTIMIZERS.register("sgd")
@dataclass(frozen=True)
class SGD:
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    schedule: str = "constant"
    milestones: Milestones = ()   # schedule piecewise: [[step, lr], ...]

    def __post_init__(self) -> None:
        check_schedule(self.schedule, self.milestones)
        check_rates(self.lr, self.weight_decay)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0 (Nesterov momentum with no momentum is plain SGD)")

    def lr_at(self, epoch: int, epochs: int, step: int = 0) -> float:
        return learning_rate(self.lr, self.schedule, epoch, epochs, step, self.milestones)

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                               nesterov=self.nesterov)
