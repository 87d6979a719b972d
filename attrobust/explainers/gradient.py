"""The plain gradient of the target logit with respect to the input ("vanilla saliency", Simonyan et al., 2014).

Signed, as Captum's `Saliency(abs=False)`; the saliency post-processing (`attrobust.attributions.saliency_map`)
takes absolute values and sums channels, as for every explainer. One forward and one backward pass per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attrobust.attributions import input_gradient, logit_of
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer


@EXPLAINERS.register("gradient")
@dataclass(frozen=True)
class GradientExplainer(Explainer):
    family = "gradient"

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        return input_gradient(logit_of(model, target), x, create_graph=create_graph)
