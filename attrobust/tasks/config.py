"""One command's configuration, typed: `RunConfig` is what a command reads its settings from.

Its typed blocks (the command's top-level settings, `eval`, `accel`, `threat`, `train`, the prediction attack) are
built and checked before any work (`tasks.common.every_problem` refuses every bad setting in one line). The
component blocks (dataset, model, reg, optim, explainer, the attack on explanations) stay mappings, because their
registries build them and name their keys in messages; `plain`, the resolved config as Hydra composed it, is kept
whole for what is hashed or recorded (provenance, result identities, checkpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attrobust.attacks.threat import ThreatModel
from attrobust.engine.accel import Accel
from attrobust.engine.evaluate import EvalSettings, PredictionAttack
from attrobust.engine.train import TrainSettings
from attrobust.tasks.common import CommandSettings


@dataclass(frozen=True)
class RunConfig:
    """A command's settings: typed blocks, the component blocks as mappings, the resolved config (module doc)."""

    plain: dict[str, Any]
    settings: CommandSettings             # seed, device, eval_at_end, attributions, figures
    eval: EvalSettings                    # which images, batch sizes, protocol (the measure lists: `eval_cfg`)
    accel: Accel
    threat: ThreatModel | None = None     # None: an evaluation of a checkpoint from before the threat group
    train: TrainSettings | None = None    # `train` only
    attack: PredictionAttack | None = None  # accuracy under attack (train with eval_at_end, evaluate)

    @property
    def seed(self) -> int:
        return self.settings.seed

    def block(self, group: str) -> dict[str, Any]:
        """A component block as its registry builds it (`reg`, `attribution_attack`, ...)."""
        return self.plain[group]

    @property
    def dataset_cfg(self) -> dict[str, Any]:
        return self.plain["dataset"]

    @property
    def model_cfg(self) -> dict[str, Any]:
        return self.plain["model"]

    @property
    def reg_cfg(self) -> dict[str, Any]:
        return self.plain["reg"]

    @property
    def optim_cfg(self) -> dict[str, Any]:
        return self.plain["optim"]

    @property
    def explainer_cfg(self) -> dict[str, Any]:
        return self.plain["explainer"]

    @property
    def eval_cfg(self) -> Mapping[str, Any]:
        """The whole `eval:` block, with the measure lists the evaluation parts read (attrobust/parts)."""
        return self.plain["eval"]
