"""Top-k attack on attributions (Ghorbani et al.; RAR reference `attack_method="topK"`).

Objective: D(x~) = - sum of the surrogate saliency of x~ over the ORIGINAL image's top-k pixels; each step ascends
sign(grad D), pushing attribution mass out of the pixels that mattered. Threat model: L-inf eps-ball, pixels in
[0, 1]; the label must not change. Reference MNIST settings: eps 0.3, 100 steps of 0.01, k 200 attacked / 100
reported, 100 IG steps, Kendall selection, 3 restarts (`conf/dataset/*.yaml`, `conf/attack/topk.yaml`).

Example: `attrobust attack checkpoint=outputs/train/<run> attack=topk eval.num_examples=100`
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack, Reference


@ATTRIBUTION_ATTACKS.register("topk")
@dataclass(frozen=True)
class TopKAttack(AttributionAttack):

    def objective(self, surrogate_saliency: Tensor, reference: Reference) -> Tensor:
        return -(surrogate_saliency * reference.top_k).sum(1)
