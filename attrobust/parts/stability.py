"""Stability: each metric of `eval.stability` (attrobust.stability) of the configured explainer under random noise,
one row per correctly classified image (engine/stability.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from attrobust.engine import cost
from attrobust.engine.sharding import Shard
from attrobust.engine.stability import stability_per_image
from attrobust.parts import PARTS
from attrobust.parts.base import ExplainingPart, Measured
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.rows import RunIdentity, image_mean_rows
from attrobust.registry import Registry
from attrobust.stability import STABILITY, StabilityMetric

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")


@PARTS.register("stability")
class Stability(ExplainingPart):
    file: ClassVar[str] = "stability.csv"
    position: ClassVar[int] = 30
    eval_keys: ClassVar[tuple[str, ...]] = ("stability",)
    setting: ClassVar[str | None] = "stability"
    measures: ClassVar[Registry[Any] | None] = STABILITY
    example: ClassVar[str] = "[max_sensitivity,{name:local_lipschitz,samples:50}]"

    metrics: list[StabilityMetric]

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        return [cost.Part(metric.column, images * metric.samples * times.explainer, f"stability {metric.column}")
                for metric in self.metrics]

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        for metric in (m for m in self.metrics if m.divides_by_pixels):
            dark = float((trained.test.images < 3).float().mean())  # uint8: below 0.01 of the [0, 1] range
            log.info("%s divides the input's change by each pixel's value: %.0f%% of these images' pixels are below "
                     "0.01, so they dominate it and it can rank models unlike the other stability measures (see the "
                     "docs/stability-and-faithfulness.md); compare with max_sensitivity or local_lipschitz",
                     metric.column, 100 * dark)
        return Measured(stability_per_image(trained.model, trained.test, self.explainer, self.metrics, trained.seed,
                                            trained.eval_settings.batch_size, shard))

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        identity = lines[0][1]
        return image_mean_rows(identity, frame, cls.listed(record.eval),  # type: ignore[arg-type]
                               Bootstrap.of(record.eval, identity.seed))
