"""What every command shares: its top-level settings, the settings blocks, the device, the attacks it builds, and
the check that reports every bad setting of a command in one line before any work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from attrobust.attacks import attribution_attack, prediction_attack
from attrobust.attacks.threat import ThreatModel
from attrobust.config import group_options
from attrobust.engine.accel import Accel
from attrobust.engine.evaluate import EvalSettings
from attrobust.engine.examples import FigureChoice
from attrobust.errors import AttrobustError, choices
from attrobust.explainers import EXPLAINERS
from attrobust.parts import part_settings
from attrobust.registry import construct

S = TypeVar("S")


@dataclass(frozen=True)
class CommandSettings:
    """The top-level keys of `train.yaml`, `evaluate.yaml` and `attack.yaml`, checked like a component's fields."""

    seed: int = 0
    device: str = "auto"
    eval_at_end: bool = True
    attributions: bool = True
    figure_examples: int = 3
    figure_images: Any = "changed"  # FigureChoice: changed | first | a list of test indices

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {self.seed}")
        if self.figure_examples < 0:
            raise ValueError(f"figure_examples must be >= 0, got {self.figure_examples}")
        choice = self.figure_images
        if not (choice in ("changed", "first") or (isinstance(choice, (list, tuple)) and choice
                                                   and all(isinstance(i, int) for i in choice))):
            raise ValueError(f"figure_images must be changed, first or a list of test indices, got {choice!r}")

    @property
    def figure_choice(self) -> FigureChoice:
        return self.figure_images if isinstance(self.figure_images, str) else tuple(self.figure_images)


# the top-level keys of the commands' configs besides CommandSettings' (a key that is none of these was mistyped)
TOP_LEVEL_GROUPS = ("paths", "dataset", "threat", "model", "reg", "optim", "attack", "attribution_attack", "explainer",
                    "eval", "train", "accel", "checkpoint", "dataset_path")


def command_settings(plain: Mapping[str, Any]) -> CommandSettings:
    """The command's top-level settings, each of the right type and range (one line naming the key otherwise)."""
    names = CommandSettings.__dataclass_fields__
    unknown = sorted(set(plain) - set(names) - set(TOP_LEVEL_GROUPS))
    if unknown:
        raise AttrobustError(f"unknown setting '{unknown[0]}' (from +{unknown[0]}=... or a config file): nothing "
                             f"reads it; the top-level settings are {choices([*names, *TOP_LEVEL_GROUPS])}")
    return construct(CommandSettings, {key: value for key, value in plain.items() if key in names}, "settings", "")


def settings_block(cls: type[S], values: Mapping[str, Any], key: str) -> S:
    """A settings dataclass from the `key:` block of the config, checked like a registered component."""
    return construct(cls, values, f"'{key}' settings", key)


def eval_settings(values: Mapping[str, Any]) -> EvalSettings:
    """The `eval:` block's settings but the measure lists the evaluation parts own (`eval.stability`, ...: each part
    checks its own, attrobust/parts), checked like a registered component."""
    owned = part_settings()
    unknown = sorted(set(values) - set(EvalSettings.__dataclass_fields__) - set(owned))
    if unknown:
        raise AttrobustError(f"unknown key(s) {', '.join(unknown)} for 'eval' settings; valid keys: "
                             f"{choices([*EvalSettings.__dataclass_fields__, *owned])}")
    return settings_block(EvalSettings, {key: value for key, value in values.items() if key not in owned}, "eval")


def threat_model(plain: Mapping[str, Any]) -> ThreatModel:
    """The `threat:` block (attrobust/attacks/threat.py), checked; one line when the dataset chose none."""
    if not isinstance(plain.get("threat"), Mapping):
        raise AttrobustError("no threat model: a dataset's YAML chooses one in its defaults "
                             "(- /threat@_global_.threat: NAME); choose one with threat=NAME "
                             f"({', '.join(group_options('threat'))})")
    return settings_block(ThreatModel, plain["threat"], "threat")


def every_problem(checks: list[Callable[[], object]]) -> None:
    """Run independent checks (each builds one part of the config) and refuse them all in one line: a user fixing
    their command sees every bad setting at once, not one per attempt."""
    problems = []
    for check in checks:
        try:
            check()
        except AttrobustError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise AttrobustError(problems[0])
    if problems:
        raise AttrobustError(f"{len(problems)} problems: " + "; ".join(f"({i}) {p}" for i, p in
                                                                       enumerate(problems, 1)))


def evaluation_checks(plain: Mapping[str, Any]) -> list[Callable[[], object]]:
    """The independent parts of an evaluate / attack / explain config, each built once to find every bad setting."""
    checks: list[Callable[[], object]] = [lambda: command_settings(plain),
                                          lambda: eval_settings(plain["eval"]),
                                          lambda: settings_block(Accel, plain.get("accel", {}), "accel")]
    checks += [lambda part=part: part.listed(plain["eval"]) for part in part_settings().values()]
    if "threat" in plain:
        checks.append(lambda: threat_model(plain))
    if "explainer" in plain:
        checks.append(lambda: EXPLAINERS.build(plain["explainer"]))
    if "attribution_attack" in plain and plain.get("attributions", True):
        checks.append(lambda: attribution_attack(plain["attribution_attack"], EXPLAINERS.build({"name": "gradient"}),
                                                 "attribution_attack"))
    if "attack" in plain and "attributions" in plain:  # evaluate: its prediction attack
        checks.append(lambda: prediction_attack(plain["attack"]))
    return checks


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise cpu, cuda or cuda:N, which must be usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise AttrobustError(f"unknown device '{name}'; choose auto, cpu, cuda or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise AttrobustError(f"device={name} is not supported (attrobust runs on CPUs and CUDA GPUs); choose auto, "
                             f"cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AttrobustError(f"device '{name}' requested but CUDA is not available here; use device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise AttrobustError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s); choose "
                             f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return device


def chosen_preset() -> str | None:
    """The `+experiment=NAME` preset of this Hydra job (None outside Hydra or without one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")
