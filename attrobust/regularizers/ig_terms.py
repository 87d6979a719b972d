"""The attribution term of IG-NORM and IG-SUM-NORM: the L1 norm of IG of the loss along the path x -> x'.

As in the RAR reference code (`model.py`, mode 'train'): IG(x, x') = (x' - x) * (1/m) * sum_k grad_z CE(z_k, y) at
z_k = x + (k/m)(x' - x), k = 1..m (right Riemann sum), so sum(IG) ~= CE(x') - CE(x). The inner maximisation uses the
reference's cheaper approximation, every approx_factor-th point only (k = a, 2a, ..., m), which is the same right
Riemann sum with m / approx_factor points. The reference clips the softmax at 1e-10 inside this loss; attrobust uses
the exact cross-entropy (the two differ only where a true-class probability is below 1e-10).

Shapes: x, x_adv (B, ...), y (B,) -> (B,) per-example L1 norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attrobust.attributions import cross_entropy_of, integrated_gradients
from attrobust.regularizers.adversarial import AdversarialObjective


def ig_l1(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, steps: int, create_graph: bool,
          max_points: int | None = None, recompute: bool = False) -> Tensor:
    """||IG(x, x_adv)||_1 per example, IG of the cross-entropy from baseline x to x_adv with `steps` points."""
    attributions = integrated_gradients(cross_entropy_of(model, y), x_adv, baseline=x, steps=steps,
                                        create_graph=create_graph, max_points=max_points, recompute=recompute)
    return attributions.abs().flatten(1).sum(1)


def approximate_steps(ig_steps: int, approx_factor: int) -> int:
    """Points of the inner maximisation's IG: every approx_factor-th of ig_steps."""
    if approx_factor < 1 or ig_steps % approx_factor:
        raise ValueError(f"approx_factor must divide ig_steps, got {approx_factor} and {ig_steps}")
    return ig_steps // approx_factor


@dataclass(frozen=True)
class IGObjective(AdversarialObjective):
    """Settings shared by IG-NORM and IG-SUM-NORM: the weight of the IG term and its quadrature."""

    weight: float = 1.0
    ig_steps: int = 50
    approx_factor: int = 5
    max_points: int | None = None
    recompute: bool = False   # bound the second-order memory by max_points (integrated_gradients' `recompute`)
    second_order: ClassVar[bool] = True  # differentiates through input gradients: runs the eager model

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ig_steps < 1:
            raise ValueError(f"ig_steps must be >= 1, got {self.ig_steps}")
        approximate_steps(self.ig_steps, self.approx_factor)
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.recompute and self.max_points is None:
            raise ValueError("recompute bounds memory by max_points rows per pass: set max_points too "
                             "(e.g. max_points=500), or recompute=false")

    def ig_norm(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, inner: bool) -> Tensor:
        """||IG(x, x_adv)||_1 per example: the cheap approximation inside PGD (`inner`), all points outside."""
        steps = approximate_steps(self.ig_steps, self.approx_factor) if inner else self.ig_steps
        return ig_l1(model, x, x_adv, y, steps, create_graph=True, max_points=self.max_points,
                      recompute=self.recompute)
