"""Gradient x Input (Shrikumar et al., 2016): the input times the gradient of the target logit, as Captum's
`InputXGradient`. Equal to IG from a zero baseline with one right-Riemann point."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attrobust.attributions import input_gradient, logit_of
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer


@EXPLAINERS.register("grad_x_input")
@dataclass(frozen=True)
class GradientTimesInputExplainer(Explainer):
    family = "gradient"

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        return x * input_gradient(logit_of(model, target), x, create_graph=create_graph)
