"""Out-of-distribution accuracy: natural accuracy on corrupted copies of every selected image, for each corruption of
`eval.corruptions` (attrobust.corruptions: noise, blur, contrast, brightness, affine maps, occluding patterns and their
compositions) at each of its severities, batched on the device.

Per-image columns `<corruption>@<severity>` (1: classified correctly); each corruption is a line of the table with
`corruption_accuracy@<severity>` (Wilson interval) and `corruption_accuracy`, its mean over the severities (bootstrap
interval over images), and a last line, `corruptions`, the mean over every corruption and severity. The draws depend
on `seed` and each image's index only, so shards and reruns corrupt each image the same way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption
from attrobust.engine import cost
from attrobust.engine.sharding import Shard
from attrobust.errors import AttrobustError
from attrobust.parts import PARTS
from attrobust.parts.base import EvaluationPart, Measured, Request
from attrobust.registry import Registry
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")
ALL = "corruptions"  # the last line: every corruption and severity


@PARTS.register("corruption")
class CorruptionAccuracy(EvaluationPart):
    file: ClassVar[str] = "corruption.csv"
    position: ClassVar[int] = 15
    every_image: ClassVar[bool] = True
    eval_keys: ClassVar[tuple[str, ...]] = ("corruptions",)
    setting: ClassVar[str | None] = "corruptions"
    measures: ClassVar[Registry[Any] | None] = CORRUPTIONS
    example: ClassVar[str] = "[gaussian_noise,{name:rotate,severities:[1,5]},{name:compose,of:[rotate,contrast]}]"

    def __init__(self, corruptions: list[Corruption]) -> None:
        self.corruptions = corruptions  # each listed once (build_listed refuses a repeat)

    @classmethod
    def configured(cls, trained: TrainedModel, request: Request) -> CorruptionAccuracy | None:
        corruptions = cls.listed(trained.config.eval_cfg)
        return cls(corruptions) if corruptions else None  # type: ignore[arg-type]

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        for corruption in self.corruptions:
            try:
                corruption.check_fits(tuple(trained.test.images.shape[1:]))
            except ValueError as error:
                raise AttrobustError(f"eval.corruptions: {corruption.column}: {error}") from None

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        passes = sum(len(c.severities) for c in self.corruptions)
        return [cost.Part("corruption", images * passes * times.first_order / 3, "corruption accuracy")]

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        model, data, device = trained.model, trained.test, trained.device
        columns: dict[str, list[torch.Tensor]] = {}
        positions = []
        with torch.inference_mode(), trained.accel.autocast(device):
            for first, end in shard.units(len(data), trained.eval_settings.batch_size):
                x, y = data.batch(slice(first, end), device)
                indices = data.index[first:end].to(device)
                positions.append(torch.arange(first, end))
                for corruption in self.corruptions:
                    for severity in corruption.severities:
                        moved = corruption.corrupt(x, severity, trained.seed, indices)
                        correct = (model(moved).argmax(1) == y).cpu()
                        columns.setdefault(f"{corruption.column}@{severity}", []).append(correct)
        at = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.int64)
        frame = pd.DataFrame({"index": data.index[at].numpy(), "label": data.labels[at].numpy(),
                              **{name: torch.cat(parts).numpy() for name, parts in columns.items()}})
        lines = [(c.column, f"{c.column} at severities {','.join(map(str, c.severities))}")
                 for c in self.corruptions]
        if len(frame):
            log.info("corruption accuracy over %d images: %s; all: %.2f%%", len(frame), ", ".join(
                f"{name} {100 * frame[[k for k in frame.columns if k.startswith(name + '@')]].to_numpy().mean():.2f}%"
                for name, _ in lines), 100 * frame.iloc[:, 2:].to_numpy().mean())
        return Measured(frame, [*lines, (ALL, f"mean over {len(lines)} corruptions and their severities")])

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        bootstrap = Bootstrap.of(record.eval, lines[0][1].seed)
        rows = []
        for name, identity in lines:
            columns = list(frame.columns[2:]) if name == ALL else \
                [c for c in frame.columns[2:] if c.rsplit("@", 1)[0] == name]
            base, n = asdict(identity), len(frame)
            if name != ALL:
                for column in columns:
                    low, high = bootstrap.proportion(frame[column].astype(bool))
                    rows.append({**base, "metric": f"corruption_accuracy@{column.rsplit('@', 1)[1]}", "unit": "%",
                                 "value": 100 * float(frame[column].astype(bool).mean()) if n else float("nan"),
                                 "n": n, "low": low, "high": high})
            per_image = frame[columns].astype(float).mean(axis=1)
            low, high = bootstrap.interval(per_image, 100.0)
            rows.append({**base, "metric": "corruption_accuracy", "unit": "%", "n": n, "low": low, "high": high,
                         "value": 100 * float(per_image.mean()) if n else float("nan")})
        return pd.DataFrame(rows, columns=ROW_COLUMNS)
