"""Random-sign attack (Ghorbani et al.'s baseline; RAR reference `attack_method="random"`).

Each step adds step_size * sign(N(0, 1)) per pixel (projected to the eps-ball and [0, 1]); the kept iterate is chosen
exactly as for the other attacks (label unchanged, lowest selection criterion: Kendall by default). The control that
tells a real attack from noise: a top-k attack that is no better than this one is not attacking the explanation (Kamath
et al.'s critique).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack, Reference


@ATTRIBUTION_ATTACKS.register("random_sign")
@dataclass(frozen=True)
class RandomSignAttack(AttributionAttack):
    deterministic = False
    ascends = False

    def step_direction(self, model: nn.Module, x: Tensor, reference: Reference) -> Tensor:
        return torch.randn_like(x).sign()
