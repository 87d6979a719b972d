"""Layer-wise Relevance Propagation (Bach et al., PLoS ONE 2015) with zennit's rules (Anders et al., 2021), as the
gradient of the target logit with each layer's backward rewritten ("the gradient trick" of zennit and Captum):

- `epsilon`: every Linear and Conv2d layer passes R_in = a * W^T (R_out / (z + eps sign z)) (sign 0 counts as +1);
- `epsilon_plus` (zennit's `EpsilonPlus` composite, the usual choice for CNNs): Linear layers as `epsilon`, Conv2d
  layers the z+ rule of zennit's `ZPlus`: R_in = a+ * W+^T (R_out / s) + a- * W-^T (R_out / s) with
  s = stabilised (W+ a+ + b+ + W- a-).

Activations pass relevance unchanged and max-pools by their gradient (zennit's `Pass` and default), the output
relevance is the target's logit, and the map is the relevance at the first layer's input: the normalised image of a
model that normalises inside (zennit's gradient through the normalisation divides it by the standard deviation;
ours does not). The ratios are held constant in the backward pass, so the map has no useful derivative in x: not
differentiable, attacks on it estimate their direction. One forward and one backward pass per image.
Oracle: zennit's `Gradient` attributor with the same composite (tests/test_gradient_explainers.py), also on
convolutions that pad in their own forward (the RAR ResNet's 'SAME' ones: the z+ rule calls the layer's forward).
Uncertain on residual networks: what passes a residual sum or an average pooling here is the gradient trick's
quantity, so relevance splits in proportion to each branch's activation; zennit without a canonizer passes the
relevance itself through them (duplicating it at a sum). The two differ there; not checked against a canonised zennit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.explainers.perturbation import refuse_create_graph

Rule = Literal["epsilon", "epsilon_plus"]
RULES = ("epsilon", "epsilon_plus")


def stabilised(z: Tensor, epsilon: float) -> Tensor:
    """zennit's `stabilize`: z + eps * sign(z), with sign(0) = +1."""
    return z + ((z == 0).to(z) + z.sign()) * epsilon


def _with_weights(module: nn.Module, a: Tensor, weight: Tensor, bias_sign: int, inside: set[nn.Module]) -> Tensor:
    """The layer's own forward (its padding included, e.g. a 'SAME' convolution's) on `a` with `weight` and the
    bias's positive part (bias_sign 1) or none (0); `inside` keeps the hooks off this nested call."""
    params = {"weight": weight}
    if module.bias is not None:
        params["bias"] = module.bias.clamp(min=0) if bias_sign else torch.zeros_like(module.bias)
    inside.add(module)
    try:
        return torch.func.functional_call(module, params, (a,))
    finally:
        inside.discard(module)


def _rewritten(module: nn.Module, a: Tensor, z: Tensor, rule: Rule, epsilon: float, inside: set[nn.Module]) -> Tensor:
    """z in the forward pass; in the backward pass, the rule's relevance ratio times the (modified) layer's gradient."""
    if rule == "epsilon_plus" and isinstance(module, nn.Conv2d):
        along = _with_weights(module, a.clamp(min=0), module.weight.clamp(min=0), 1, inside) \
            + _with_weights(module, a.clamp(max=0), module.weight.clamp(max=0), 0, inside)
    else:
        along = z
    ratio = (z / stabilised(along, epsilon)).detach()
    return z.detach() + (along - along.detach()) * ratio


@EXPLAINERS.register("lrp")
@dataclass(frozen=True)
class LRPExplainer(Explainer):
    family = "gradient"
    rule: Rule = "epsilon_plus"
    epsilon: float = 1e-6   # zennit's default stabiliser
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got '{self.rule}'")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        first: list[Tensor] = []
        handles, inside = [], set()
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                handles.append(module.register_forward_pre_hook(lambda _m, inputs: first.append(inputs[0])
                                                                if not first else None))
                handles.append(module.register_forward_hook(
                    lambda m, inputs, z: None if m in inside else _rewritten(m, inputs[0], z, self.rule, self.epsilon,
                                                                             inside)))
        try:
            with torch.enable_grad():
                z = x.detach().requires_grad_(True)
                score = model(z).gather(1, target.view(-1, 1)).sum()
                if not first:
                    raise ValueError("explainer lrp: the model has no Linear or Conv2d layer to propagate through")
                (grad,) = torch.autograd.grad(score, first[0])
        finally:
            for handle in handles:
                handle.remove()
        return (first[0] * grad).detach().to(x.dtype)

    def describe(self) -> str:
        return f"lrp({self.rule})"
