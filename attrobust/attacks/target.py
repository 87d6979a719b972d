"""Targeted attack on attributions (Ghorbani et al.; RAR reference `attack_method="target"`).

Objective: the surrogate saliency mass inside a target region, pushed up. The region is given as fractions of the
image, `region: [top, bottom, left, right]` (default: the top-left quarter), so one config serves every image size.
Threat model and settings as `topk` (`conf/attack/target.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack, Reference


@ATTRIBUTION_ATTACKS.register("target")
@dataclass(frozen=True)
class TargetAttack(AttributionAttack):
    region: tuple[float, float, float, float] = (0.0, 0.5, 0.0, 0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        top, bottom, left, right = self.region
        if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
            raise ValueError(f"region must be [top, bottom, left, right] fractions with top < bottom and "
                             f"left < right, got {list(self.region)}")

    def region_pixels(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels, bottom and right exclusive; at least one pixel each way."""
        height, width = image_size
        top, bottom, left, right = self.region
        return (round(top * height), max(round(bottom * height), round(top * height) + 1),
                round(left * width), max(round(right * width), round(left * width) + 1))

    def target_mask(self, image_size: tuple[int, int], device: torch.device) -> Tensor:
        top, bottom, left, right = self.region_pixels(image_size)
        mask = torch.zeros(*image_size, device=device)
        mask[top:bottom, left:right] = 1.0
        return mask.flatten()

    def objective(self, surrogate_saliency: Tensor, reference: Reference) -> Tensor:
        return (surrogate_saliency * self.target_mask(reference.image_size, surrogate_saliency.device)).sum(1)
