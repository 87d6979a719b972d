"""Integrated Gradients (Sundararajan, Taly, Yan, ICML 2017), batched and differentiable.

IG_i(x) = (x_i - b_i) * sum_k w_k * dF/dz_i at z_k = b + a_k (x - b). The default rule, `riemann_right`
(a_k = k/m, w_k = 1/m, k = 1..m), is the one of the RAR reference code, both for the saliency maps of the attribution
attack and for the IG term of IG-NORM; the alphas and weights of `riemann_left|middle|right` and of `gausslegendre`
(the m-point Gauss-Legendre rule mapped to [0, 1]: a_k = (t_k + 1) / 2, w_k = v_k / 2 for numpy's nodes t_k and
weights v_k, exact for polynomial integrands up to degree 2m - 1) equal Captum's. `riemann_trapezoid` is the
trapezoid rule on m evenly spaced points from 0 to 1 (weights 1/(m - 1), halved at both ends, summing to 1); Captum's
`riemann_trapezoid` takes the same points with weights 1/m halved at the ends, which sum to (m - 1)/m, so its IG is
this one times (m - 1)/m and misses completeness by about 1/m (tests/test_attributions.py, scripts/ig_quadrature.py).

All B*m path points go through `fn` as one batch (in chunks of at most `max_points` rows when set), laid out
path-point-major: row r of the batch given to `fn` is a point on the path of example r % B. With `create_graph=True`
the result is differentiable with respect to `x` and to the parameters inside `fn` (second order), which
attribution-robust training needs.

Shapes: x, baseline (B, ...) -> attributions (B, ...), same dtype and device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

Rule = Literal["riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
RULES: tuple[Rule, ...] = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def path_points(steps: int, rule: Rule = "riemann_right") -> tuple[list[float], list[float]]:
    """Interpolation coefficients a_k in [0, 1] and quadrature weights w_k (summing to 1) of a rule."""
    if steps < 1 or (rule == "riemann_trapezoid" and steps < 2):
        raise ValueError(f"ig steps must be >= 1 (>= 2 for the trapezoid rule), got {steps}")
    if rule == "riemann_right":
        return [k / steps for k in range(1, steps + 1)], [1.0 / steps] * steps
    if rule == "riemann_left":
        return [k / steps for k in range(steps)], [1.0 / steps] * steps
    if rule == "riemann_middle":
        return [(k + 0.5) / steps for k in range(steps)], [1.0 / steps] * steps
    if rule == "riemann_trapezoid":
        weights = [1.0 / (steps - 1)] * steps
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return [k / (steps - 1) for k in range(steps)], weights
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return [float(t + 1) / 2 for t in nodes], [float(v) / 2 for v in weights]
    raise ValueError(f"rule must be one of {', '.join(RULES)}, got '{rule}'")


def integrated_gradients(fn: Callable[[Tensor], Tensor], x: Tensor, baseline: Tensor | None = None,
                         steps: int = 50, rule: Rule = "riemann_right", create_graph: bool = False,
                         max_points: int | None = None, recompute: bool = False) -> Tensor:
    """IG of `fn` (a batch -> one score per row) at `x` from `baseline` (zeros when None).

    `recompute` (with `create_graph`): keep no chunk's graph after its forward and rebuild it, one chunk at a time,
    when the result is differentiated (torch.utils.checkpoint), so the memory of a second-order backward is bounded
    by `max_points` rows instead of growing with all B*m points; the gradients are the same, at the price of one
    more forward and backward per point."""
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    delta = x - baseline
    batch = x.shape[0]
    per_chunk = steps if max_points is None else max(1, max_points // max(batch, 1))
    view = (-1, 1) + (1,) * (x.dim() - 1)
    alpha, weight = (t.view(view) for t in _path_tensors(steps, rule, x.dtype, x.device))
    total = torch.zeros_like(x)
    with torch.enable_grad():
        for start in range(0, steps, per_chunk):
            a, w = alpha[start:start + per_chunk], weight[start:start + per_chunk]
            z = (baseline.unsqueeze(0) + a * delta.unsqueeze(0)).reshape(-1, *x.shape[1:])
            if create_graph and recompute:
                grad = checkpoint(_input_gradient, fn, z, True, use_reentrant=False)
            else:
                grad = _input_gradient(fn, z, create_graph)
            total = total + (grad.view(a.shape[0], *x.shape) * w).sum(0)
    return delta * total


@functools.lru_cache(maxsize=64)
def _path_tensors(steps: int, rule: Rule, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """`path_points` as (steps,) tensors on `device`, made once: a copy from the host in every call of an attack
    step would wait for the device (read-only: never modify them in place)."""
    alphas, weights = path_points(steps, rule)
    with torch.inference_mode(False):  # usable in autograd even when first made under inference mode
        return torch.tensor(alphas, dtype=dtype, device=device), torch.tensor(weights, dtype=dtype, device=device)


def _input_gradient(fn: Callable[[Tensor], Tensor], z: Tensor, create_graph: bool) -> Tensor:
    """d sum(fn(z)) / dz, row by row (the rows of `fn` are independent)."""
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(z).sum(), z, create_graph=create_graph)
    return grad


def tiled(labels: Tensor, rows: int) -> Tensor:
    """Each example's label for each of `rows` rows in the path-point-major layout (row r: example r % B)."""
    return labels.repeat(rows // labels.shape[0])


def logit_of(model: nn.Module, labels: Tensor) -> Callable[[Tensor], Tensor]:
    """`fn` for IG: the logit of each example's label (tiled over the path-point-major layout)."""
    return lambda z: model(z).gather(1, tiled(labels, z.shape[0]).unsqueeze(1)).squeeze(1)


def probability_of(model: nn.Module, labels: Tensor) -> Callable[[Tensor], Tensor]:
    """`fn` for IG: the softmax probability of each example's label (path-point-major layout)."""
    return lambda z: F.softmax(model(z), dim=1).gather(1, tiled(labels, z.shape[0]).unsqueeze(1)).squeeze(1)


def cross_entropy_of(model: nn.Module, labels: Tensor) -> Callable[[Tensor], Tensor]:
    """`fn` for IG: the per-example cross-entropy at each example's label (path-point-major layout)."""
    return lambda z: F.cross_entropy(model(z), tiled(labels, z.shape[0]), reduction="none")
