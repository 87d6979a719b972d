"""The evaluation-part contract: one registered step of `evaluate` and `attack`.

A part is one file in `attrobust/parts/` whose class registers itself with `@PARTS.register(name)`. It says
- whether the command's config asks for it (`configured`: an instance, or None),
- what it checks before any work (`prepare`: settings that cannot fit these images or this model are refused, as are
  unfinished chunks of another evaluation),
- what it costs (`costs`, for the estimate line), and what it computes for a shard of the selected images (`run`:
  one per-image frame, written to its `file`, plus the lines it adds to the table),
- how a frame becomes result rows (`rows`, from the frame and `evaluation.json` alone: what a merge of shards and
  `report` call), and how its rows are merged (`line_column` names each row's line; `every_image`: a row for every
  selected image, else one for each image it scored, the same images as every other scoring part).
A part whose measures are listed in `eval.<setting>` (`setting`, names from the registry `measures`, as
`eval.stability=[max_sensitivity]`) owns that setting: it runs when the list is not empty, and the list is checked
with the command's other settings. A part that explains with the configured explainer (`explains`) shares one line
of the table with the other such parts: '<stability and faithfulness> of <explainer>'. `evaluate` is a loop over
the configured parts in `position` order, and so are the per-image files, `evaluation.json`, the merge, its coverage
check and the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from attrobust.engine import cost
from attrobust.engine.evaluate import PredictionAttack
from attrobust.engine.sharding import Shard
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.measures import Measure
from attrobust.registry import Registry, build_listed
from attrobust.reporting.rows import RunIdentity

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel


@dataclass(frozen=True)
class Request:
    """What the command asks of an evaluation: accuracy under `accuracy_attack` (evaluate) and attacks on explanations
    configured at `attack_key` (evaluate, attack); the other parts follow `eval.*`."""

    accuracy_attack: PredictionAttack | None
    attack_key: str | None


@dataclass
class Measured:
    """What a part computed on a shard."""

    frame: pd.DataFrame                          # its per-image rows
    lines: list[tuple[str, str]] = field(default_factory=list)  # (line name, the `attack` column) of its own lines
    record: dict[str, Any] = field(default_factory=dict)  # what it adds to evaluation.json (chunks, certificate)


class EvaluationPart(ABC):
    registry_name: ClassVar[str] = ""             # set by `PARTS.register`
    file: ClassVar[str] = ""                      # its per-image CSV
    position: ClassVar[int] = 0                   # its place among the parts (files, rows, table lines)
    line_column: ClassVar[str | None] = None      # the per-image column naming each row's line (None: one line)
    every_image: ClassVar[bool] = False           # a row for every selected image (else: the images it scored)
    explains: ClassVar[bool] = False              # its line is shared: '<parts> of <explainer>'
    eval_keys: ClassVar[tuple[str, ...]] = ()     # the `eval.*` settings its numbers depend on
    setting: ClassVar[str | None] = None          # the `eval.<setting>` list of its measures, which it owns
    measures: ClassVar[Registry[Any] | None] = None  # the registry those measures are named in
    example: ClassVar[str] = ""                   # a value of that list, for messages

    @classmethod
    def listed(cls, given: Mapping[str, Any]) -> list[Measure]:
        """The measures its `eval.<setting>` list names in `given` (the eval settings); may be empty."""
        if cls.setting is None or cls.measures is None:
            return []
        return build_listed(cls.measures, given.get(cls.setting, []), f"eval.{cls.setting}", cls.example,
                            allow_empty=True)

    @classmethod
    @abstractmethod
    def configured(cls, trained: TrainedModel, request: Request) -> EvaluationPart | None:
        """This part as the command's config asks for it, its settings checked; None when not asked for."""

    def groups(self) -> Mapping[str, str]:
        """The config groups its numbers depend on: {name in the evaluation's settings: key in the config}."""
        return {"explainer": "explainer"} if self.explains else {}

    @property
    def explainer(self) -> Explainer | None:
        """The explainer it runs (the cost estimate is calibrated with the first part's)."""
        return None

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        """Refuse, before any work, what cannot be measured on these images and this model."""

    @abstractmethod
    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        """Its estimated seconds for `images` images."""

    @abstractmethod
    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        """Its per-image rows for this shard of the selected images."""

    def finish(self) -> None:
        """Once the evaluation's files are written: drop what was kept only to resume (finished chunks)."""

    @classmethod
    @abstractmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        """Its result rows, from its per-image rows and `evaluation.json` alone."""

    @classmethod
    def checks(cls, record: EvaluationRecord, frame: pd.DataFrame) -> Checks | None:
        """Whether its numbers mean anything on this evaluation (None: nothing to check), from the same inputs."""
        return None


@dataclass(frozen=True)
class Checks:
    """A part's check of its own numbers: a table written beside the results, and a line for each problem (in
    table.md and the log)."""

    file: str
    table: pd.DataFrame
    problems: list[str]


class ExplainingPart(EvaluationPart):
    """A part that scores the configured explainer (`explainer=`) with the measures of its own `eval.<setting>` list;
    it runs when that list is not empty."""

    explains: ClassVar[bool] = True

    def __init__(self, metrics: list[Any], explainer: Explainer) -> None:
        self.metrics, self._explainer = metrics, explainer

    @classmethod
    def configured(cls, trained: TrainedModel, request: Request) -> EvaluationPart | None:
        metrics = cls.listed(trained.config.eval_cfg)
        return cls(metrics, EXPLAINERS.build(trained.config.explainer_cfg)) if metrics else None

    @property
    def explainer(self) -> Explainer:
        return self._explainer

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        self.explainer.check_model(trained.model)
