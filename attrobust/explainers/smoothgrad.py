"""SmoothGrad (Smilkov et al., 2017): the mean of another explainer's attributions over noisy copies of the image.

SmoothGrad(x) = (1/n) sum_s E(x + sigma * z_s), z_s ~ N(0, I), sigma = noise_level * (max(x) - min(x)) per image,
the noise scale of the authors' code (PAIR-code/saliency, `stdev_spread`). E is any registered explainer (`wraps`,
default `gradient`), as Captum's NoiseTunnel wraps any attribution method; noisy images are not clipped to [0, 1]
(neither Captum nor the authors clip).

Seeded, common noise: the n patterns z_s are drawn from a generator seeded with `seed` at every call and shared by
all images of the batch. An image's map therefore does not depend on the batch it is in (batched equals one image at
a time) and the explainer is a fixed function of x, so an attack ascends a deterministic objective. Another `seed`
draws other patterns.

All images x samples go through the wrapped explainer as one batch, in passes of at most `max_points` rows, counted
in the wrapped explainer's own passes (null: all at once, except second-order use on a CPU: 100 rows per pass).
Oracle: Captum's `NoiseTunnel(...).attribute(nt_type="smoothgrad")` on the same noise draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, check_seed, rows_per_pass

ExplainFn = Callable[[Tensor, Tensor], Tensor]  # (images, targets) -> attributions


def smooth(explain: ExplainFn, x: Tensor, target: Tensor, noise: Tensor, samples_per_pass: int) -> Tensor:
    """The mean over s of `explain(x + noise[s], target)`; `noise` (n, B, C, H, W), sample-major rows."""
    samples = noise.shape[0]
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for start in range(0, samples, samples_per_pass):
        part = noise[start:start + samples_per_pass]
        noisy = (x.unsqueeze(0) + part).reshape(-1, *x.shape[1:])
        attributions = explain(noisy, target.repeat(part.shape[0]))
        total = total + attributions.view(part.shape[0], x.shape[0], *attributions.shape[1:]).sum(0)
    return total / samples


@EXPLAINERS.register("smoothgrad")
@dataclass(frozen=True)
class SmoothGradExplainer(Explainer):
    wraps: str | Mapping[str, Any] = "gradient"   # an explainer's name, or its settings ({name: ig, steps: 20})
    samples: int = 50
    noise_level: float = 0.15
    seed: int = 0
    max_points: int | None = None
    inner: Explainer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wrapped = {"name": self.wraps} if isinstance(self.wraps, str) else self.wraps
        if not isinstance(wrapped, Mapping):
            raise ValueError(f"wraps must be an explainer's name or settings such as {{name: ig, steps: 20}}, got "
                             f"{self.wraps!r}")
        if str(wrapped.get("name")) == "smoothgrad":
            raise ValueError("wraps must name another explainer than smoothgrad")
        object.__setattr__(self, "inner", EXPLAINERS.build(wrapped))
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not 0 <= self.noise_level < math.inf:
            raise ValueError(f"noise_level must be >= 0 and finite, got {self.noise_level}")
        check_seed(self.seed)
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.samples * self.inner.passes_per_image

    @property
    def needs_surrogate(self) -> bool:  # type: ignore[override]
        return self.inner.needs_surrogate

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return self.inner.differentiable

    @property
    def family(self) -> str:  # type: ignore[override]
        return self.inner.family

    @property
    def adjustable_passes(self) -> int:
        return self.samples

    def with_passes(self, passes: int) -> SmoothGradExplainer:
        """`passes` noise samples drawn with the same seed, each explained by the wrapped explainer as it is."""
        return dataclasses.replace(self, samples=passes)

    def noise(self, x: Tensor) -> Tensor:
        """(samples, B, C, H, W): the seeded patterns, scaled by each image's sigma."""
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: the same patterns on every device
        patterns = torch.randn((self.samples, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
        flat = x.flatten(1)
        sigma = self.noise_level * (flat.amax(1) - flat.amin(1))
        return patterns.unsqueeze(1) * sigma.view(1, -1, *(1,) * (x.dim() - 1))

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        inner = self.inner
        # null max_points: all samples in one pass, except for second-order use on a CPU, where passes of 100 rows
        # are faster per row (explainers.base.rows_per_pass); a first-order pass is fastest whole (scripts/bench.py)
        rows = rows_per_pass(self.max_points, x) if create_graph or self.max_points is not None else None
        per_pass = self.samples if rows is None else max(1, rows // max(1, x.shape[0] * inner.passes_per_image))
        return smooth(lambda z, t: inner.explain(model, z, t, create_graph=create_graph), x, target, self.noise(x),
                      per_pass)

    def check_model(self, model: nn.Module) -> None:
        self.inner.check_model(model)

    def describe(self) -> str:
        return f"smoothgrad({self.inner.describe()}, {self.samples}x{self.noise_level:g})"
