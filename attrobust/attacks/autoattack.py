"""AutoAttack (Croce & Hein, ICML 2020) for accuracy under attack: the standard version (APGD-CE, APGD-T, FAB-T,
Square) at the dataset's L-inf eps, from the authors' code as packaged on PyPI (`pyautoattack`, github fra31/auto-
attack; an optional extra: pip install "attrobust[autoattack]").

Why this package: it is the authors' implementation (the one RobustBench reports), importable without a git checkout;
torchattacks' AutoAttack re-implements the same ensemble and is what our PGD benchmark compares against. The PGD
column (`attack=pgd`) stays the reference's; `attack=autoattack` replaces it in NA/AA. An image counts as robust when
it is classified correctly, clean and at AutoAttack's output. Datasets with fewer than 10 classes target every other
class (the standard version targets 9). `seed` makes its random starts repeatable.

Shapes: x (B, C, H, W) float32 in [0, 1], y (B,) int64 -> robust (B,) bool.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attrobust.attacks import PREDICTION_ATTACKS
from attrobust.attacks.projected_ascent import pixel_amount
from attrobust.errors import AttrobustError

INSTALL = 'attack=autoattack needs the pyautoattack package: pip install "attrobust[autoattack]"'


def autoattack_class() -> type:
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise AttrobustError(INSTALL) from error
    return AutoAttack


@PREDICTION_ATTACKS.register("autoattack")
@dataclass(frozen=True)
class AutoAttackPrediction:
    eps: float
    version: Literal["standard", "plus", "rand"] = "standard"
    seed: int = 0
    batch_size: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.eps < math.inf:
            raise ValueError(f"eps must be positive and finite, got {self.eps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        autoattack_class()  # a missing package is one line before any work

    def describe(self) -> str:
        return f"autoattack {self.version} eps={pixel_amount(self.eps)}"

    def robust(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Per-example bool: classified correctly when clean and at AutoAttack's adversarial example."""
        with torch.inference_mode():
            logits = model(x)
        correct = logits.argmax(1) == y
        adversary = autoattack_class()(model, eps=self.eps, norm="Linf", version=self.version, seed=self.seed,
                                       device=x.device)
        adversary.logger.setLevel(logging.WARNING)  # its per-attack lines would flood the run's log
        targets = min(9, logits.shape[1] - 1)
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)  # and its predictions
        with torch.inference_mode():
            return correct & (model(x_adv.to(x.device)).argmax(1) == y)
