"""Attributions: batched differentiable Integrated Gradients, input gradients, saliency maps, softplus surrogate."""

from attrobust.attributions.integrated_gradients import (
    RULES,
    Rule,
    cross_entropy_of,
    integrated_gradients,
    logit_of,
    path_points,
)
from attrobust.attributions.saliency import input_gradient, saliency_map
from attrobust.attributions.surrogate import LeakySoftplus, check_smoothable, softplus_surrogate

__all__ = ["RULES", "LeakySoftplus", "Rule", "check_smoothable",
           "cross_entropy_of", "input_gradient", "integrated_gradients",
           "logit_of", "path_points", "saliency_map", "softplus_surrogate"]
