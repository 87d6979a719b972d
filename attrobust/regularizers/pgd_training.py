"""PGD adversarial training (Madry et al., ICLR 2018): CE(x*), x* = PGD maximising CE in the L-inf eps-ball.

As in the RAR reference code there is no clean term. The attack runs on the model in its current (training) mode;
its settings come from the dataset by interpolation (`conf/reg/pgd.yaml`). Deliberate difference:
`eps_warmup_epochs` ramps eps linearly over the first epochs (see `adversarial.py`). `conf/reg/pgd.yaml` sets 3:
measured on mnist_mini, small_cnn trained at eps 0.3 from the first step stayed at chance (10% accuracy) for all of
5 epochs, while a 3-epoch ramp learned. `reg.eps_warmup_epochs=0` is the reference behaviour (which trains 100k
steps and can afford the slow start).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput, reduce


@REGULARIZERS.register("pgd")
@dataclass(frozen=True)
class PGDTraining(AdversarialObjective):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.inner_maximum(lambda z: F.cross_entropy(model(z), y, reduction="none"), x)
        adv_logits = model(x_adv)
        ce_adv = F.cross_entropy(adv_logits, y, reduction="none")
        with torch.no_grad():
            logits = model(x)
        terms = {"ce_adv": ce_adv.detach().mean(),
                 "acc_adv": (adv_logits.detach().argmax(1) == y).float().mean(),
                 "eps": x.new_full((), self.eps)}
        return LossOutput(reduce(ce_adv, self.reduction), logits, terms)
