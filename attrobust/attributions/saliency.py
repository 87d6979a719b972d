"""Saliency: the plain input gradient, and the reference's post-processing of an attribution into a map.

`saliency_map` follows the RAR reference code (after Ghorbani et al.): |attribution| summed over channels, then scaled
so each map sums to h*w, which makes maps of different image sizes comparable. An all-zero attribution gives an
all-zero map (the reference would divide by zero).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def input_gradient(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False) -> Tensor:
    """d fn(x) / dx for a batch (`fn` maps a batch to one score per row); same shape as x."""
    with torch.enable_grad():
        z = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(z).sum(), z, create_graph=create_graph)
    return grad


def saliency_map(attributions: Tensor) -> Tensor:
    """(B, C, H, W) attributions -> (B, H*W) maps: sum_c |a|, normalised to sum H*W per map."""
    summed = attributions.abs().sum(dim=1).flatten(1)
    total = summed.sum(dim=1, keepdim=True)
    return summed * (summed.shape[1] / torch.where(total > 0, total, torch.ones_like(total)))
