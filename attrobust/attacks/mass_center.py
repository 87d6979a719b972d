"""Mass-center attack on attributions (Ghorbani et al.; RAR reference `attack_method="mass_center"`).

Objective: ||C(x~) - C(x)||^2, the squared shift of the surrogate saliency's centre of mass from the original
surrogate centre (truncated to whole pixels, as the reference does), C = sum(s * (row, col)) / (h*w).
Threat model and settings as `topk` (`conf/attack/mass_center.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack, Reference


@ATTRIBUTION_ATTACKS.register("mass_center")
@dataclass(frozen=True)
class MassCenterAttack(AttributionAttack):
    needs_surrogate_center = True
    draws_centers = True

    def objective(self, surrogate_saliency: Tensor, reference: Reference) -> Tensor:
        assert reference.surrogate_center is not None
        height, width = reference.image_size
        grid = surrogate_saliency.view(-1, height, width)
        rows = torch.arange(height, dtype=grid.dtype, device=grid.device)
        cols = torch.arange(width, dtype=grid.dtype, device=grid.device)
        center = torch.stack([(grid.sum(2) * rows).sum(1), (grid.sum(1) * cols).sum(1)], dim=1) / (height * width)
        return ((center - reference.surrogate_center.to(grid.dtype)) ** 2).sum(1)
