"""The smooth surrogate of a ReLU network, on the same weights, for second-order attack directions.

ReLU has a zero second derivative almost everywhere, so the gradient of an attribution with respect to the input
carries no signal through it. As in the RAR reference code (after Ghorbani et al.), the attack direction is computed
with ReLU replaced by softplus (beta = 1), and a leaky ReLU of slope s by s*x + (1 - s)*softplus(x); measures use the
original network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn


class LeakySoftplus(nn.Module):
    """s*x + (1 - s) * softplus(x; beta): the smooth counterpart of LeakyReLU(negative_slope=s)."""

    def __init__(self, negative_slope: float, beta: float = 1.0) -> None:
        super().__init__()
        self.negative_slope, self.beta = negative_slope, beta

    def forward(self, x: Tensor) -> Tensor:
        return self.negative_slope * x + (1.0 - self.negative_slope) * F.softplus(x, beta=self.beta)


def smooth_counterpart(module: nn.Module, beta: float) -> nn.Module | None:
    if isinstance(module, nn.ReLU):
        return nn.Softplus(beta=beta)
    if isinstance(module, nn.LeakyReLU):
        return LeakySoftplus(module.negative_slope, beta)
    return None


@contextmanager
def softplus_surrogate(model: nn.Module, beta: float = 1.0) -> Iterator[nn.Module]:
    """Within the block, every nn.ReLU / nn.LeakyReLU module of `model` is its softplus counterpart; restored after."""
    swaps = [(parent, name, child, smooth)
             for parent in model.modules() for name, child in parent.named_children()
             if (smooth := smooth_counterpart(child, beta)) is not None]
    for parent, name, _, smooth in swaps:
        setattr(parent, name, smooth)
    try:
        yield model
    finally:
        for parent, name, child, _ in swaps:
            setattr(parent, name, child)
