"""The one projected-gradient-ascent loop behind every L-inf attack and every adversarial training objective.

PGD as in Madry et al. (2018) and the RAR reference code: a uniform random start in the eps-ball (clipped to the
pixel range), then `steps` times x <- clip_[0,1](clip_ball(x + step_size * sign(grad objective(x)))). Callers pass
the objective: cross-entropy for PGD training and accuracy under attack; later, IG norms for IG-NORM and
IG-SUM-NORM's inner maximisation.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# Maps a batch (B, ...) to one score per example (B,), to be maximised.
AttackObjective = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LinfBall:
    """{z : ||z - center||_inf <= eps} intersected with the pixel box [low, high]; eps in pixel units of [0, 1]."""

    center: Tensor
    eps: float
    low: float = 0.0
    high: float = 1.0

    def project(self, z: Tensor) -> Tensor:
        z = torch.minimum(torch.maximum(z, self.center - self.eps), self.center + self.eps)
        return z.clamp(self.low, self.high)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A uniform draw from the cube around `center`, clipped to the pixel range."""
        noise = torch.rand(self.center.shape, generator=generator, device=self.center.device,
                           dtype=self.center.dtype)
        return (self.center + (2.0 * noise - 1.0) * self.eps).clamp(self.low, self.high)


def pixel_amount(value: float) -> str:
    """A radius or step in [0, 1] pixel units as the user would write it: 8/255 for 0.0313725..., 0.3 for 0.3."""
    plain = f"{value:g}"
    levels = round(value * 255)
    if len(plain) > 5 and 0 < levels < 255 and abs(value * 255 - levels) < 1e-4:
        return f"{levels}/255"
    return plain


def check_pgd_settings(eps: float, steps: int, step_size: float, linf: bool = True) -> None:
    """ValueError (naming the field) unless eps and step_size are positive and finite, an L-inf eps is at most 1 (the
    pixel range: more changes nothing) and steps >= 1 (no step: only the random start, no attack)."""
    if not 0 < eps < math.inf:
        raise ValueError(f"eps must be positive and finite, got {eps}")
    if linf and eps > 1:
        raise ValueError(f"eps must be at most 1 (pixels are in [0, 1]: 8/255 is 0.0314), got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (with no step there is no attack, only its random start), got {steps}")
    if not 0 < step_size < math.inf:
        raise ValueError(f"step_size must be positive and finite, got {step_size}")


def pgd(objective: AttackObjective, ball: LinfBall, steps: int, step_size: float, random_start: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """Maximise `objective` over `ball` with signed-gradient steps; returns a detached batch inside the ball.

    Never mutates `ball.center` and never writes parameter gradients (it differentiates with respect to the input
    only), so it is safe inside a training step; gradients are enabled inside even under `torch.no_grad()`.
    """
    x = ball.sample(generator) if random_start else ball.center.detach().clone()
    with torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(x).sum(), x)
            x = ball.project(x.detach() + step_size * grad.sign())
    return x.detach()
