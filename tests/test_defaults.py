"""One source of every default: each value a component's YAML (conf/<group>/<name>.yaml) or a settings block gives
equals the default of the field it sets in the Python class or builder, so a script or test that builds a component
from its registry gets what the CLI gets. A deliberate difference is marked on its line with `# differs from the
default: <why>`. Generated from the registries and the config folders: a new component is checked when it exists."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml

from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS
from attrobust.config import config_dir
from attrobust.data import DATASETS
from attrobust.engine.accel import Accel
from attrobust.engine.evaluate import EvalSettings
from attrobust.engine.train import TrainSettings
from attrobust.explainers import EXPLAINERS
from attrobust.models import MODELS
from attrobust.optim import OPTIMIZERS
from attrobust.regularizers import REGULARIZERS
from attrobust.tracking import LOGGERS

GROUPS = {"dataset": (DATASETS,), "model": (MODELS,), "reg": (REGULARIZERS,), "explainer": (EXPLAINERS,),
          "optim": (OPTIMIZERS,), "attack": (PREDICTION_ATTACKS, ATTRIBUTION_ATTACKS), "logger": (LOGGERS,)}
BLOCKS = [("eval/default.yaml", None, EvalSettings), ("accel/default.yaml", None, Accel),
          ("train.yaml", "train", TrainSettings)]
MARK = "differs from the default"


def component_files() -> list[tuple[Path, object]]:
    found = []
    for group, registries in GROUPS.items():
        for path in sorted((config_dir() / group).glob("*.yaml")):
            name = (yaml.safe_load(path.read_text()) or {}).get("name")
            builder = next((r.get(name) for r in registries if name in r.names()), None)
            if builder is not None:  # _attribution.yaml (shared keys) and model=external (not a registry model)
                found.append((path, builder))
    return found


def comparable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return comparable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: comparable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(comparable(v) for v in value)
    return value


def differences(path: Path, values: dict, builder: object) -> list[str]:
    """Each key whose literal value differs from the builder's default without the mark on its line."""
    text = path.read_text()
    parameters = inspect.signature(builder).parameters
    found = []
    for key, value in values.items():
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        if key == "name" or default is inspect.Parameter.empty or (isinstance(value, str) and "${" in value):
            continue
        if comparable(value) != comparable(default) and not re.search(rf"^\s*{key}:.*#.*{MARK}", text, re.M):
            found.append(f"{path.relative_to(config_dir())}: {key}={value!r}, default {default!r}")
    return found


@pytest.mark.parametrize("path,builder", component_files(), ids=lambda item: getattr(item, "stem", ""))
def test_a_component_yaml_repeats_its_defaults_or_marks_the_difference(path, builder):
    assert differences(path, yaml.safe_load(path.read_text()), builder) == []


@pytest.mark.parametrize("file,key,cls", BLOCKS, ids=[file for file, _, _ in BLOCKS])
def test_a_settings_block_repeats_its_defaults_or_marks_the_difference(file, key, cls):
    values = yaml.safe_load((config_dir() / file).read_text())
    values = values[key] if key else values
    assert differences(config_dir() / file, {k: v for k, v in values.items() if k in cls.__dataclass_fields__},
                       cls) == []


def test_every_component_kind_with_a_config_folder_is_checked():
    assert len(component_files()) >= 30
    assert {path.parent.name for path, _ in component_files()} == set(GROUPS)
