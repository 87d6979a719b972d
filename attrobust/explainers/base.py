"""The explainer contract: `explain(model, x, target, *, create_graph=False) -> (B, C', H, W)` attributions.

`x` is a float32 NCHW batch in [0, 1], `target` the (B,) class indices to explain (one per image: no caller tiles
labels). The result has the batch and spatial shape of `x`; C' is the number of input channels, or 1 for a map that
is defined per pixel (Grad-CAM). With `create_graph=True` the result is differentiable with respect to `x` and the
model's weights (second order), which attacks on explanations and attribution-robust training need.

What the engine reads is declared here, not found with `getattr`:
- `passes_per_image`: forward + backward passes one image costs (IG: its path points), for sizing chunks;
- `needs_surrogate`: whether the second derivative that an attack ascends vanishes on a piecewise-linear network
  (gradient-based maps of a ReLU network are piecewise constant in x), so the attack direction is taken on the
  smooth surrogate (`attrobust.attributions.surrogate`) as the RAR reference code does for IG;
- `differentiable`: whether `create_graph=True` gives a map differentiable in x (false for perturbation-based
  explainers, whose maps come from forward passes alone): an attack on one estimates its direction instead
  (`direction=estimated`, said in the log) and training objectives refuse it;
- `family`: gradient, cam, perturbation or attention, the families of Nourelahi et al.'s study ("How explainable are
  adversarially-robust CNNs?", 2022), by which `scripts/study_report.py` groups its findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attrobust.errors import AttrobustError

FAMILIES = ("gradient", "cam", "perturbation", "attention")
CPU_POINTS_PER_PASS = 100  # rows per forward pass on a CPU when `max_points` is null (measured: scripts/bench.py)


@dataclass(frozen=True)
class Explainer:
    registry_name: ClassVar[str] = ""
    needs_surrogate: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    family: ClassVar[str] = ""  # one of FAMILIES

    @property
    def passes_per_image(self) -> int:
        return 1

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return self.registry_name

    @property
    def adjustable_passes(self) -> int | None:
        """The pass count `with_passes` sets (IG points, SmoothGrad samples); None when it is fixed."""
        return None

    def with_passes(self, passes: int) -> Explainer:
        """This explainer with `passes` passes per image (an attack's cheaper direction); ValueError when its count
        is fixed."""
        raise ValueError(f"explainer {self.registry_name} has a fixed {self.passes_per_image} pass(es) per image, so "
                         f"direction_points and selection_points cannot change it; leave them null")

    def check_model(self, model: nn.Module) -> None:
        """Raise AttrobustError (one line) if this explainer cannot explain `model`; before any work is done."""


class NotDifferentiable(AttrobustError):
    """An attack needs the map's derivative and the explainer has none (caught where the attack can estimate it)."""

    def __init__(self, name: str, needed_by: str) -> None:
        super().__init__(f"{needed_by}: explainer {name} is not differentiable (its map comes from forward passes "
                         f"alone); set direction=estimated")
        self.explainer = name


def rows_per_pass(max_points: int | None, x: Tensor) -> int | None:
    """`max_points`, or when it is null: CPU_POINTS_PER_PASS on a CPU (larger passes are slower per row there:
    measured 14 ms for 1 image x 100 points, 192 ms for 8 x 100 on 2 cores), everything at once on a GPU."""
    if max_points is not None:
        return max_points
    return CPU_POINTS_PER_PASS if x.device.type == "cpu" else None


def check_seed(seed: int) -> None:
    """A seed of an explainer's draws: what `torch.Generator.manual_seed` takes."""
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {seed}")


def check_max_points(max_points: int | None) -> None:
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be >= 1 or null, got {max_points}")
