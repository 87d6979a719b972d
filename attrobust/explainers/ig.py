"""Integrated Gradients of the target logit (Sundararajan et al., ICML 2017), as the RAR reference code computes it.

IG from an all-zero baseline with `steps` path points of the right Riemann rule (`riemann_right`: a_k = k/m), the
rule of the reference's `ig_attack.py`; `riemann_left|middle|trapezoid` are Captum's other Riemann rules and
`gausslegendre` its Gauss-Legendre rule (completeness error against points for each: scripts/ig_quadrature.py). All
B * steps path points go through the model in passes of at most `max_points` rows (null: 100 on a CPU, all at once
on a GPU); the result does not depend on it. The math is `attrobust.attributions.integrated_gradients`, shared with
IG-NORM and IG-SUM-NORM.

Oracle: Captum's `IntegratedGradients(method="riemann_right")` (tests/test_explainers.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from attrobust.attributions import RULES, Rule, integrated_gradients, logit_of
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, rows_per_pass


@EXPLAINERS.register("ig")
@dataclass(frozen=True)
class IntegratedGradientsExplainer(Explainer):
    family = "gradient"
    steps: int = 100
    rule: Rule = "riemann_right"
    max_points: int | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got '{self.rule}'")
        if self.steps < (2 if self.rule == "riemann_trapezoid" else 1):
            raise ValueError(f"steps must be >= 1 (>= 2 for riemann_trapezoid), got {self.steps}")
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.steps

    @property
    def adjustable_passes(self) -> int:
        return self.steps

    def with_passes(self, passes: int) -> IntegratedGradientsExplainer:
        return dataclasses.replace(self, steps=passes)

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        return integrated_gradients(logit_of(model, target), x, steps=self.steps, rule=self.rule,
                                    create_graph=create_graph, max_points=rows_per_pass(self.max_points, x))

    def describe(self) -> str:
        rule = "" if self.rule == "riemann_right" else f" {self.rule}"
        return f"ig({self.steps}{rule})"
