"""What a result row measured, beyond its dataset, model and reg names: the identity `report` groups seeds by.

Two hashes travel in every result row:
- `setting`: the trained model's resolved settings except the seed, where files are and how the job ran (every
  dataset, model, reg, optim, train and amp value; the `+experiment` preset's name);
- `evaluation`: what the evaluation measured with (the prediction attack, the attribution attack, the explainer,
  the eval settings that choose images and measures, dataset settings that differ from the training's).
`settings.json`, beside each `results.csv`, holds both as flat `key: value` maps, so that `report` can say in the
user's own keys (`reg.weight`, `attack.name`, `eval.num_examples`) what tells two rows apart. Rows from before
these columns carry empty hashes; `report` groups them by their overrides, as it did then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrobust.attacks.threat import THREAT_KEYS
from attrobust.atomic import write_text_atomic
from attrobust.provenance import config_hash

SETTINGS_FILE = "settings.json"
Flat = dict[str, Any]  # "reg.weight" -> 1.0; lists and mappings below a leaf are kept as JSON text

# top-level keys of a training config that are not the model's settings: its seed, where things are, how it runs,
# and the evaluation at its end (that is the `evaluation` identity)
NOT_TRAINING = ("seed", "device", "paths", "dataset_path", "checkpoint", "eval", "eval_at_end", "attack",
                "attribution_attack", "explainer", "attributions", "figure_examples", "figure_images")
# train.*: when to save and log
TRAIN_RUN_KEYS = ("resume", "keep_last", "checkpoint_every", "log_every_s", "test_every")
DATA_LOCATION_KEYS = ("root", "path", "download", "cache")  # dataset.*: where the files are, not what they hold
ACCEL_KEPT = ("amp",)  # accel.*: bf16 changes the numbers; layout, compilation and pinned memory do not


def flat(tree: Mapping[str, Any], prefix: str = "") -> Flat:
    """{'reg': {'weight': 1.0}} -> {'reg.weight': 1.0}; a list stays one value (as JSON text)."""
    out: Flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[name] = value
    return out


def dataset_settings(dataset: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in dataset.items() if key not in DATA_LOCATION_KEYS}


def training_setting(plain: Mapping[str, Any], preset: str | None = None) -> Flat:
    """The trained model's identity (everything but the seed, locations and run switches) of a resolved config."""
    kept: dict[str, Any] = {key: value for key, value in plain.items() if key not in NOT_TRAINING}
    kept["dataset"] = dataset_settings(plain["dataset"])
    if "train" in kept:
        kept["train"] = {key: value for key, value in kept["train"].items() if key not in TRAIN_RUN_KEYS}
    if "accel" in kept:
        kept["accel"] = {key: value for key, value in kept["accel"].items() if key in ACCEL_KEPT}
    if "reg" in kept:  # memory switches of IG objectives: the same result in smaller passes
        kept["reg"] = {key: value for key, value in kept["reg"].items() if key not in ("max_points", "recompute")}
    setting = flat(kept)
    if preset:
        setting["experiment"] = preset
    return setting


def stored_setting(payload: Mapping[str, Any]) -> Flat:
    """A checkpoint's training identity, or {} for a checkpoint written before it was stored: its configs lack the
    optimiser and training settings, so its rows get no `setting` hash and `report` names them by their overrides."""
    stored = payload.get("setting")
    if not isinstance(stored, Mapping):
        return {}
    return {threat_key(key): value for key, value in stored.items()}


def threat_key(key: str) -> str:
    """A setting's key, with a threat-model key of a checkpoint written before the threat group (`dataset.eps`,
    `dataset.pgd.steps`, ...) spelled as today's (`threat.eps`, ...): the same training, the same identity."""
    head, _, rest = key.partition(".")
    threat = rest.split(".")[0]
    return f"threat.{rest}" if head == "dataset" and threat in THREAT_KEYS else key


def setting_digest(setting: Flat) -> str:
    """The `setting` hash of a row ('' when unknown: an older checkpoint)."""
    return digest(setting) if setting else ""


SELECTION_KEYS = ("num_examples", "indices", "classes", "sample")  # eval.*: which test images
# an attack setting that changes nothing while a sibling has a given value: left out of the identity then, so that
# rows written before the setting existed pool with new ones (restarts chosen by the measure or by Kendall agree
# when the measure is Kendall)
INERT_WHEN = {"restarts_by": ("measure", "kendall")}


def evaluation_setting(plain: Mapping[str, Any], setting: Flat, eval_keys: Sequence[str],
                       groups: Mapping[str, str]) -> Flat:
    """What an evaluation measured with: the `eval` settings its parts read (`eval_keys`; the images always), the
    config groups they read (`groups`: {name: key in the config}, e.g. the attack on explanations configured at
    `attribution_attack`, the explainer), and the dataset and threat settings that differ from the trained model's."""
    given = plain.get("eval", {})
    used = [*SELECTION_KEYS, *eval_keys]
    parts: dict[str, Any] = {"eval": {key: given[key] for key in used if key in given}}
    parts.update({name: plain[key] for name, key in groups.items()})
    evaluation = without_inert(flat(parts))
    dataset = flat({"dataset": dataset_settings(plain.get("dataset", {}))})
    evaluation.update({key: value for key, value in dataset.items() if key not in setting or setting[key] != value})
    threat = flat({"threat": plain.get("threat") or {}})  # a model trained before the threat group: dataset.eps, ...
    evaluation.update({key: value for key, value in threat.items()
                       if setting.get(key, setting.get("dataset." + key.removeprefix("threat."))) != value})
    return evaluation


def without_inert(settings: Flat) -> Flat:
    """`settings` without the keys `INERT_WHEN` says change nothing beside their siblings' values."""
    def inert(key: str) -> bool:
        group, _, name = key.rpartition(".")
        sibling, value = INERT_WHEN.get(name, (None, None))
        return sibling is not None and settings.get(f"{group}.{sibling}" if group else sibling) == value

    return {key: value for key, value in settings.items() if not inert(key)}


def digest(settings: Flat) -> str:
    return config_hash(settings)


def write_settings(folder: Path, setting: Flat, evaluation: Flat) -> None:
    text = json.dumps({"setting": setting, "evaluation": evaluation}, indent=1, sort_keys=True, default=str)
    write_text_atomic(folder / SETTINGS_FILE, text + "\n")


def read_settings(folder: Path) -> dict[str, Flat]:
    """{hash: flat settings} of `folder/settings.json` (both identities); {} when absent or unreadable (the
    report then names the rows by their overrides)."""
    try:
        data = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for part in ("setting", "evaluation"):
        values = data.get(part)
        if isinstance(values, dict) and all(isinstance(v, (str, int, float, bool, type(None)))
                                            for v in values.values()):
            out[digest(values)] = values
    return out
