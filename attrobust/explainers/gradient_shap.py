"""GradientSHAP (Lundberg and Lee, 2017; Expected Gradients, Erion et al., 2021), as Captum's `GradientShap`: the
mean over samples s of d f / dx at a random point of the path from a baseline b_s to the (noisy) image, times the
image minus the baseline:

    phi(x) = (1/S) sum_s grad f(b_s + a_s (x + n_s - b_s)) * (x + n_s - b_s),  a_s ~ U(0, 1), n_s ~ N(0, stdev^2)

with f the target's logit. Expected Gradients draws b_s from the training data; the explainer contract sees only the
batch, so the baselines here are drawn from `baselines`: `uniform` images (each pixel U(0, 1)) or `zeros` (which
makes it IG from black with random path points). This is the uncertain part: the study's numbers for Expected
Gradients used data baselines, and a data distribution cannot be reproduced without the training set.

Seeded, common draws: the S triples (a_s, b_s, n_s) come from a generator seeded with `seed` at every call and are
shared by all images of the batch, so an image's map does not depend on its batch (Captum draws per row). Passes per
image: `samples`; differentiable (second order), on the smooth surrogate for piecewise-linear networks like IG.
Oracle: Captum's `GradientShap` on the same draws (tests/test_gradient_explainers.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attrobust.attributions import input_gradient, logit_of
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, check_seed, rows_per_pass

Baselines = Literal["uniform", "zeros"]


@EXPLAINERS.register("gradient_shap")
@dataclass(frozen=True)
class GradientShapExplainer(Explainer):
    family = "gradient"
    samples: int = 20
    stdev: float = 0.0           # Captum's default: no noise on the image
    baselines: Baselines = "uniform"
    seed: int = 0
    max_points: int | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not self.stdev >= 0:
            raise ValueError(f"stdev must be >= 0, got {self.stdev}")
        if self.baselines not in ("uniform", "zeros"):
            raise ValueError(f"baselines must be one of uniform, zeros, got '{self.baselines}'")
        check_seed(self.seed)
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.samples

    @property
    def adjustable_passes(self) -> int:
        return self.samples

    def with_passes(self, passes: int) -> GradientShapExplainer:
        return dataclasses.replace(self, samples=passes)

    def draws(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(S, B) path positions, (S, B, C, H, W) baselines and noise: S seeded draws shared by the batch."""
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: the same draws on every device
        shape = (self.samples, *x.shape[1:])
        alphas = torch.rand(self.samples, generator=generator, dtype=x.dtype)
        baselines = torch.rand(shape, generator=generator, dtype=x.dtype) if self.baselines == "uniform" \
            else torch.zeros(shape, dtype=x.dtype)
        noise = self.stdev * torch.randn(shape, generator=generator, dtype=x.dtype)
        batch = (self.samples, x.shape[0])
        return tuple(part.to(x.device).unsqueeze(1).expand(*batch, *part.shape[1:])  # type: ignore[return-value]
                     for part in (alphas, baselines, noise))

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        rows = rows_per_pass(self.max_points, x)
        return expected_gradients(model, x, target, *self.draws(x), rows=rows, create_graph=create_graph)

    def describe(self) -> str:
        noise = f", noise {self.stdev:g}" if self.stdev else ""
        return f"gradient_shap({self.samples}, {self.baselines}{noise})"


def expected_gradients(model: nn.Module, x: Tensor, target: Tensor, alphas: Tensor, baselines: Tensor, noise: Tensor,
                       rows: int | None, create_graph: bool = False) -> Tensor:
    """(1/S) sum_s grad f(b + a (x + n - b)) * (x + n - b) for per-row draws `alphas` (S, B), `baselines` and
    `noise` (S, B, C, H, W); all S x B points in passes of about `rows` rows, sample-major."""
    samples, batch = alphas.shape
    per_pass = samples if rows is None else max(1, rows // batch)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for start in range(0, samples, per_pass):
        part = slice(start, start + per_pass)
        moved = x.unsqueeze(0) + noise[part] - baselines[part]
        a = alphas[part].view(*alphas[part].shape, *(1,) * (x.dim() - 1))
        points = (baselines[part] + a * moved).flatten(0, 1)
        grads = input_gradient(logit_of(model, target), points, create_graph=create_graph)
        total = total + (grads.view_as(moved) * moved).sum(0)
    return total / samples
