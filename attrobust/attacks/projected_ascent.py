"""The one projected-ascent loop behind every attack and every adversarial training objective, and the balls it
ascends in.

`projected_ascent` repeats x <- ball.project(step(x)) for the images still ascending: PGD (Madry et al. 2018, the RAR
reference code) with `pgd` (a random start in the ball, then steepest-ascent steps of the ball's norm along the
objective's gradient: sign(grad) in L-inf, grad / ||grad||_2 in L2), prediction PGD in L-inf and L2, the inner
maximisations of adversarial training, ART's alignment attack, and the attacks on explanations, whose steps and
bookkeeping (labels kept, best iterates, images that reached a fixed point) come in through `step` and `after`.

A ball is the set {z : ||z - center|| <= eps} intersected with the pixel box [0, 1]; `project` is the usual
approximation of the projection onto that intersection (the ball's, then the box's). The L-inf ball projects as
clip(z, center - eps, center + eps) or, with `by_offset` (the RAR reference's attack on explanations), as
center + clip(z - center, -eps, eps): the same set, rounded differently, kept so that each path stays bitwise as its
reference writes it.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

# Maps a batch (B, ...) to one score per example (B,), to be maximised.
AttackObjective = Callable[[Tensor], Tensor]
Rows = Tensor | None  # the indices of the images still ascending; None: every image


class Ball(Protocol):
    """Where an ascent may go (see the module doc); eps in pixel units of [0, 1]."""

    center: Tensor
    eps: float

    def project(self, z: Tensor) -> Tensor: ...

    def sample(self, generator: torch.Generator | None = None) -> Tensor: ...

    def ascend(self, z: Tensor, grad: Tensor, step_size: float) -> Tensor:
        """The steepest-ascent step of the ball's norm, before projection."""
        ...

    def select(self, rows: Rows) -> Ball: ...


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *[1] * (like.dim() - 1))


@dataclass(frozen=True)
class LinfBall:
    """{z : ||z - center||_inf <= eps} intersected with the pixel box [low, high]."""

    center: Tensor
    eps: float
    low: float = 0.0
    high: float = 1.0
    by_offset: bool = False  # project as center + clip(z - center) (the RAR reference's attack on explanations)

    def project(self, z: Tensor) -> Tensor:
        if self.by_offset:
            return (self.center + (z - self.center).clamp(-self.eps, self.eps)).clamp(self.low, self.high)
        z = torch.minimum(torch.maximum(z, self.center - self.eps), self.center + self.eps)
        return z.clamp(self.low, self.high)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A uniform draw from the cube around `center`, clipped to the pixel range."""
        noise = torch.rand(self.center.shape, generator=generator, device=self.center.device,
                           dtype=self.center.dtype)
        return (self.center + (2.0 * noise - 1.0) * self.eps).clamp(self.low, self.high)

    def ascend(self, z: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return z + step_size * grad.sign()

    def select(self, rows: Rows) -> LinfBall:
        return self if rows is None else LinfBall(self.center[rows], self.eps, self.low, self.high, self.by_offset)


@dataclass(frozen=True)
class L2Ball:
    """{z : ||z - center||_2 <= eps} (per image), then the pixel box [0, 1] (as torchattacks' PGDL2)."""

    center: Tensor
    eps: float

    def project(self, z: Tensor) -> Tensor:
        delta = z - self.center
        norms = _per_image(delta.flatten(1).norm(dim=1).clamp_min(1e-12), z)
        return (self.center + delta * torch.clamp(self.eps / norms, max=1.0)).clamp(0.0, 1.0)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A uniform direction and a uniform radius in [0, eps] (Madry et al.'s random start), projected."""
        center = self.center
        direction = torch.randn(center.shape, generator=generator, device=center.device, dtype=center.dtype)
        direction = direction / _per_image(direction.flatten(1).norm(dim=1), center)
        radius = _per_image(torch.rand(len(center), generator=generator, device=center.device, dtype=center.dtype),
                            center)
        return self.project(center + direction * radius * self.eps)

    def ascend(self, z: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return z + step_size * grad / _per_image(grad.flatten(1).norm(dim=1).clamp_min(1e-12), z)

    def select(self, rows: Rows) -> L2Ball:
        return self if rows is None else L2Ball(self.center[rows], self.eps)


def projected_ascent(step: Callable[[Tensor, Rows], Tensor], ball: Ball, steps: int, start: Tensor,
                     after: Callable[[Tensor, Tensor, Rows], Rows] | None = None) -> Tensor:
    """`steps` times, for the images still ascending (`rows`; all at first): x <- ball.project(step(x, rows)).

    `after(previous, new, rows)` sees each step's iterates of those images and returns the images that go on
    ascending (None: all; none left: the loop stops). Returns the last iterates, detached.

    `step` and `after` see the loop's own tensors (while every image ascends, `previous` is the live iterate; later
    steps write into the tensor an earlier `after` saw as `new`): copy what they keep (`new[rows]` is a copy).
    """
    x, rows = start.detach(), None
    for _ in range(steps):
        current = x if rows is None else x[rows]
        new = ball.select(rows).project(step(current, rows)).detach()
        if rows is None:
            x = new
        else:
            x[rows] = new
        if after is not None:
            rows = after(current, new, rows)
            if rows is not None and len(rows) == 0:
                break
    return x


def gradient(objective: AttackObjective, x: Tensor) -> Tensor:
    """d sum(objective(x)) / dx with respect to the input only (never parameter gradients), even under no_grad."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(x).sum(), x)
    return grad


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


def pgd(objective: AttackObjective, ball: Ball, steps: int, step_size: float, random_start: bool = True,
        generator: torch.Generator | None = None, start: Tensor | None = None) -> Tensor:
    """Maximise `objective` over `ball` with steepest-ascent steps of its norm from `start` (default: a random point
    of the ball, or its center without `random_start`); returns a detached batch inside the ball.

    Never mutates `ball.center` and never writes parameter gradients (it differentiates with respect to the input
    only), so it is safe inside a training step; gradients are enabled inside even under `torch.no_grad()`.
    """
    if start is None:
        start = ball.sample(generator) if random_start else ball.center.detach().clone()
    return projected_ascent(lambda x, rows: ball.ascend(x, gradient(objective, x), step_size), ball, steps, start)
