"""HKR: the multiclass hinge Kantorovich-Rubinstein loss of 1-Lipschitz classifiers (Serrurier et al., "Achieving
robustness in classification using optimal transport with hinge regularization", CVPR 2021), as deel-torchlip 1.0
computes it (`HKRMulticlassLoss`, `functional.hkr_multiclass_loss`):

    loss_i = alpha * hinge_i - (1 - alpha) * kr_i
    hinge_i = mean over classes c of relu(min_margin / 2 - s_ic f_c(x_i)) (s = +1 for the label, -1 otherwise), the
              label's term weighted by K - 1
    kr_i    = mean over classes c of w_ic f_c(x_i), w = 1 / (share of the batch with label c) for the label,
              -1 / (share without it) otherwise (`nan_to_num` of the inverse, as the package: a class absent from the
              batch gets the largest float, which multiplies no logit)

alpha in [0, 1] (the package's convention; alpha = 1: hinge only, 0: KR only). The KR term's weights are batch
shares, so the loss couples the batch (not split over processes). Reduced over the batch by `reduction` (the
package: mean). Meant for 1-Lipschitz networks (`model=lipschitz_cnn`): on any other network its margin bounds
nothing, so `train` refuses the pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, Objective, Reduction, reduce


def hinge_multiclass(logits: Tensor, onehot: Tensor, min_margin: float) -> Tensor:
    sign = torch.where(onehot > 0, 1.0, -1.0).to(logits.dtype)
    hinge = F.relu(min_margin / 2.0 - sign * logits)
    hinge = torch.where(onehot > 0, hinge * (onehot.shape[-1] - 1.0), hinge)
    return hinge.mean(dim=-1)


def kantorovich_rubinstein(logits: Tensor, onehot: Tensor) -> Tensor:
    share = (onehot > 0).to(logits.dtype).mean(dim=0)
    positive = torch.nan_to_num(1.0 / share)
    negative = -torch.nan_to_num(1.0 / (1.0 - share))
    return (torch.where(onehot > 0, positive, negative) * logits).mean(dim=-1)


def hkr_per_example(logits: Tensor, y: Tensor, alpha: float, min_margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, hinge, kr) per example."""
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    hinge, kr = hinge_multiclass(logits, onehot, min_margin), kantorovich_rubinstein(logits, onehot)
    return alpha * hinge - (1.0 - alpha) * kr, hinge, kr


@REGULARIZERS.register("hkr")
@dataclass(frozen=True)
class HKR(Objective):
    alpha: float = 0.98
    min_margin: float = 1.0
    reduction: Reduction = "mean"
    needs_lipschitz_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (deel-torchlip's convention), got {self.alpha}")
        if not self.min_margin > 0:
            raise ValueError(f"min_margin must be positive, got {self.min_margin}")

    @property
    def couples_the_batch(self) -> bool:
        return self.alpha < 1.0  # the KR term weights each example by its class's share of the batch

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        logits = model(x)
        loss, hinge, kr = hkr_per_example(logits, y, self.alpha, self.min_margin)
        ce = F.cross_entropy(logits.detach(), y, reduction="none")
        return LossOutput(reduce(loss, self.reduction), logits,
                          {"hkr": loss.detach().mean(), "hinge": hinge.detach().mean(), "kr": kr.detach().mean(),
                           "ce": ce.mean()})
