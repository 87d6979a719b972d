"""Faithfulness: each metric of `eval.faithfulness` (attrobust.faithfulness: insertion and deletion curves) of the
configured explainer, one row per correctly classified image (engine/faithfulness.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from attrobust.engine import cost
from attrobust.engine.faithfulness import faithfulness_per_image
from attrobust.engine.sharding import Shard
from attrobust.errors import AttrobustError
from attrobust.faithfulness import FAITHFULNESS, FaithfulnessMetric
from attrobust.registry import Registry
from attrobust.parts import PARTS
from attrobust.parts.base import ExplainingPart, Measured
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.rows import RunIdentity, image_mean_rows

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")


@PARTS.register("faithfulness")
class Faithfulness(ExplainingPart):
    file: ClassVar[str] = "faithfulness.csv"
    position: ClassVar[int] = 40
    eval_keys: ClassVar[tuple[str, ...]] = ("faithfulness",)
    setting: ClassVar[str | None] = "faithfulness"
    measures: ClassVar[Registry[Any] | None] = FAITHFULNESS
    example: ClassVar[str] = "[insertion,{name:deletion,steps:56}]"

    metrics: list[FaithfulnessMetric]

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        pixels = trained.test.images.shape[-2] * trained.test.images.shape[-1]
        for metric in self.metrics:
            try:
                metric.check_fits(pixels)
            except ValueError as error:
                raise AttrobustError(f"eval.faithfulness '{metric.column}': {error}") from error
        super().prepare(trained, work_dir, shard)

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        points = sum(metric.steps + 1 for metric in self.metrics)
        return [cost.Part("faithfulness", images * (times.explainer + points * times.first_order / 3), "faithfulness")]

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        frame = faithfulness_per_image(trained.model, trained.test, self.explainer, self.metrics,
                                       trained.eval_settings.batch_size, trained.eval_settings.attribution_batch_size,
                                       shard)
        log.info("insertion and deletion follow the model's confidence: compare explainers on one model, not models "
                 "of different confidence (see docs/stability-and-faithfulness.md)")
        return Measured(frame)

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        identity = lines[0][1]
        return image_mean_rows(identity, frame, cls.listed(record.eval),  # type: ignore[arg-type]
                               Bootstrap.of(record.eval, identity.seed))
