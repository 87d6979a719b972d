"""The metric contract: a function from two batches of saliency maps (and their image size) to one value per image.

A metric is a measure (`attrobust.measures.Measure`), a small frozen dataclass (its fields are its settings)
registered with `@METRICS.register(name)` in its own file under `attrobust/metrics/`; every module there is imported
by the package, so adding a metric is one Python file. It declares what tables and reports need: a `heading`, a
`unit` ("%": a fraction in [0, 1] shown in percent in result rows and tables; "" or "px"), whether higher values
mean a more robust explanation (`higher_is_better`), and the value of identical maps (`identical`), which is also
the score of an image that no iterate of an attack counted (the reference's accounting: such an image keeps its
original map).

Call: `metric(original, perturbed, maps)` with `original`, `perturbed` (N, H*W) maps and `maps` a `MapSpec` (image
size and the number k of pixels that top-k measures compare) -> (N,) float64. Which metrics a command computes is
the list `eval.metrics` (names, or mappings with settings: `{name: lens_recall, window: 5}`); the per-image CSV,
result rows, tables and reports follow that list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from attrobust.measures import Measure


@dataclass(frozen=True)
class MapSpec:
    """What a metric knows about the maps besides their values."""

    image_size: tuple[int, int]  # (H, W) of the maps, flattened row-major to H*W
    k: int                       # pixels compared by top-k measures (the attack's eval_k, at most H*W)


@dataclass(frozen=True)
class Metric(Measure):
    family: ClassVar[str] = "attribution"
    identical: ClassVar[float] = 1.0
    symmetric: ClassVar[bool] = False  # metric(a, b) == metric(b, a) (tested for every metric that declares it)

    def check_fits(self, height: int, width: int) -> None:
        """ValueError when the metric cannot measure maps of `height` x `width` pixels (none by default)."""

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        raise NotImplementedError

    @property
    def column(self) -> str:
        """The name of this metric's column and result rows: the registry name, plus each setting that differs from
        its default (`lens_recall_window5`), so two settings of one metric never share a column."""
        return self.registry_name + "".join(f"_{_setting(name, value)}" for name, value in self.changed_settings())

    @property
    def title(self) -> str:
        """The table heading, with the settings that differ from their defaults."""
        return self.heading + "".join(f" {_setting(name, value)}" for name, value in self.changed_settings())


def _setting(name: str, value: object) -> str:
    if isinstance(value, bool):
        return name if value else f"no_{name}"
    return f"{name}{value}"
