"""Uniform-noise baseline: `steps` independent uniform draws from the eps-ball around the image (clipped to [0, 1]),
kept by the attacks' selection rule (label unchanged, lowest criterion), the worst over `restarts`.

Not in the RAR reference code. It is the control Kamath et al. (LENS) ask for: random noise of the attack's budget,
measured exactly like the attack; with `random_sign` (signed random walks), the baselines a real attack must beat.
No gradient is taken, so no smooth surrogate is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack, Reference


@ATTRIBUTION_ATTACKS.register("random_noise")
@dataclass(frozen=True)
class RandomNoiseAttack(AttributionAttack):
    deterministic = False
    ascends = False

    def propose(self, model: nn.Module, current: Tensor, reference: Reference) -> Tensor:
        return reference.image + (2 * torch.rand_like(reference.image) - 1) * self.eps
