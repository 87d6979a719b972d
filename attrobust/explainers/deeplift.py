"""DeepLIFT with the rescale rule (Shrikumar, Greenside, Kundaje, ICML 2017), as Captum's `DeepLift`: the input's
difference from a baseline times multipliers that replace each activation's and max-pool's derivative by its
difference quotient between the image and the baseline.

The image and the baseline (a constant image, `baseline`; Captum's default 0) go through the model as one batch of
2B rows. An activation's backward multiplies by (f(z) - f(z0)) / (z - z0) (its derivative where |z - z0| < 1e-10),
the same for both halves; a max-pool's backward is Captum's rule: the pooled differences taken against the larger of the
two outputs, unpooled at the image's maxima and divided by the input difference. The attribution is (x - x0) times
the gradient of the target logit of both halves with respect to x (Captum's `multiply_by_inputs`). The modules
that get a rule are Captum's: ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus and MaxPool2d; functional activations
and other modules keep their gradient, as in Captum.

Where we differ from Captum (0.9): in a network with both activations and max-pools (as the Madry CNN), Captum's
attributions no longer add up to f(x) - f(x0) (captum issues #1104 and #1276: its max-pool fallback also reads the
first row's gradient for every row); ours do, and equal Captum's on networks with only one of the two.

The multipliers are held constant in the backward pass, so the map has no useful derivative in x: not
differentiable, attacks on it estimate their direction. Two forward and one backward pass per image.
Oracle: Captum's `DeepLift` (tests/test_gradient_explainers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.explainers.perturbation import refuse_create_graph

EPS = 1e-10  # Captum's: below this input difference the plain derivative is kept


ELEMENTWISE = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)  # Captum's `nonlinear` rule


class _Rescale(torch.autograd.Function):
    """An elementwise activation whose backward multiplies by (f(z) - f(z0)) / (z - z0), for both halves."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, activation: nn.Module) -> Tensor:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            out = activation.forward(leaf)  # not __call__: that would run this hook again
            (derivative,) = torch.autograd.grad(out.sum(), leaf)
        out = out.detach()
        image, reference = z.chunk(2)
        delta = torch.cat(2 * [image - reference])
        out_image, out_reference = out.chunk(2)
        ratio = torch.cat(2 * [out_image - out_reference]) / torch.where(delta.abs() < EPS, 1.0, delta)
        ctx.save_for_backward(torch.where(delta.abs() < EPS, derivative, ratio))
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (multiplier,) = ctx.saved_tensors
        return grad * multiplier, None


class _RescaleMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, pool: nn.MaxPool2d) -> Tensor:
        out, indices = F.max_pool2d(z, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode,
                                    return_indices=True)
        ctx.save_for_backward(z, out, indices)
        ctx.pool = pool
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        z, out, indices = ctx.saved_tensors
        pool = ctx.pool
        image, reference = z.chunk(2)
        delta = torch.cat(2 * [image - reference])
        out_image, out_reference = out.chunk(2)
        larger = torch.max(out_image, out_reference)
        delta_out = torch.cat([larger - out_reference, out_image - larger])
        unpooled = F.max_unpool2d(grad * delta_out, indices, pool.kernel_size, pool.stride, pool.padding,
                                  list(z.shape[-2:]))
        summed = torch.cat(2 * [sum(unpooled.chunk(2))])
        plain = F.max_unpool2d(grad, indices, pool.kernel_size, pool.stride, pool.padding, list(z.shape[-2:]))
        return torch.where(delta.abs() < EPS, plain, summed / torch.where(delta.abs() < EPS, 1.0, delta)), None


def _rescaled(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    if isinstance(module, ELEMENTWISE):
        return _Rescale.apply(inputs[0], module)
    return _RescaleMaxPool.apply(inputs[0], module)


@EXPLAINERS.register("deeplift")
@dataclass(frozen=True)
class DeepLiftExplainer(Explainer):
    family = "gradient"
    baseline: float = 0.0
    needs_surrogate = False
    differentiable = False

    @property
    def passes_per_image(self) -> int:
        return 2

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        reference = torch.full_like(x, self.baseline)
        handles = [module.register_forward_hook(_rescaled) for module in model.modules()
                   if isinstance(module, (*ELEMENTWISE, nn.MaxPool2d))]
        try:
            with torch.enable_grad():
                z = x.detach().requires_grad_(True)
                logits = model(torch.cat([z, reference]))
                score = logits.gather(1, target.repeat(2).view(-1, 1)).sum()
                (grad,) = torch.autograd.grad(score, z)
        finally:
            for handle in handles:
                handle.remove()
        return ((x - reference) * grad).detach()

    def describe(self) -> str:
        return "deeplift" if self.baseline == 0 else f"deeplift(baseline {self.baseline:g})"
