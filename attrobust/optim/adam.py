"""Adam (Kingma & Ba). The reference code trains the MNIST models with Adam, lr 1e-4, batch 50."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from attrobust.optim import OPTIMIZERS
from attrobust.optim.schedules import Milestones, check_rates, check_schedule, learning_rate


@OPTIMIZERS.register("adam")
@dataclass(frozen=True)
class Adam:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"      # the reference: constant (optim.schedule=constant, with optim.lr=1e-4)
    milestones: Milestones = ()   # schedule piecewise: [[step, lr], ...]

    def __post_init__(self) -> None:
        check_schedule(self.schedule, self.milestones)
        check_rates(self.lr, self.weight_decay)
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(self.betas)}")

    def lr_at(self, epoch: int, epochs: int, step: int = 0) -> float:
        return learning_rate(self.lr, self.schedule, epoch, epochs, step, self.milestones)

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
