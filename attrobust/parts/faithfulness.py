"""Faithfulness: each metric of `eval.faithfulness` (attrobust.faithfulness: insertion and deletion curves) of the
configured explainer, one row per correctly classified image (engine/faithfulness.py)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from attrobust.engine import cost
from attrobust.engine.faithfulness import faithfulness_per_image
from attrobust.engine.sharding import Shard
from attrobust.errors import AttrobustError
from attrobust.faithfulness import FAITHFULNESS, FaithfulnessMetric
from attrobust.registry import Registry
from attrobust.parts import PARTS
from attrobust.parts.base import ExplainingPart, Measured
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity, image_mean_rows

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
        metrics = cls.listed(record.eval)
        bootstrap = Bootstrap.of(record.eval, identity.seed)
        means = image_mean_rows(identity, frame, metrics, bootstrap)  # type: ignore[arg-type]
        if "confidence" not in frame:  # written before the confidence was kept
            return means
        return pd.concat([means, confidence_rows(identity, frame, metrics, bootstrap)], ignore_index=True)


def confidence_rows(identity: RunIdentity, frame: pd.DataFrame, metrics: list[Any],
                    bootstrap: Bootstrap) -> pd.DataFrame:
    """`<metric>_vs_confidence`: Spearman's rho over the images between each curve's area and the model's confidence
    in the label, with a percentile bootstrap interval over the images (seeded as the means'): how much of the measure
    is the model's confidence rather than the explanation (Nourelahi et al. 2022's finding on insertion and
    deletion)."""
    rows = []
    for metric in metrics:
        pairs = frame[[metric.column, "confidence"]].dropna().to_numpy(dtype=float)
        rho = float(spearman(pairs[None, :, 0], pairs[None, :, 1])[0]) if len(pairs) > 2 else math.nan
        low, high = math.nan, math.nan
        if bootstrap.resamples and len(pairs) > 2:
            draws = np.random.default_rng(bootstrap.seed).integers(0, len(pairs), (bootstrap.resamples, len(pairs)))
            values = spearman(pairs[draws, 0], pairs[draws, 1])
            tail = 100 * (1 - bootstrap.confidence) / 2
            low, high = np.nanpercentile(values, [tail, 100 - tail]) if np.isfinite(values).any() else (low, high)
        rows.append({**asdict(identity), "metric": f"{metric.column}_vs_confidence", "value": rho, "unit": "",
                     "n": len(pairs), "low": low, "high": high})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of (R, n) arrays (average ranks for ties); NaN where a side is constant."""
    ranked_a = stats.rankdata(a, axis=1) - (a.shape[1] + 1) / 2
    ranked_b = stats.rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    norms = np.sqrt((ranked_a ** 2).sum(1) * (ranked_b ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (ranked_a * ranked_b).sum(1) / norms, np.nan)
