"""NATURAL: plain cross-entropy on clean inputs, CE(x), as in the RAR reference code."""

from __future__ import annotations

from dataclasses import dataclass
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, Objective, reduce


@REGULARIZERS.register("natural")
@dataclass(frozen=True)
class Natural(Objective):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        logits = model(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        return LossOutput(reduce(ce, self.reduction), logits, {"ce": ce.detach().mean()})
