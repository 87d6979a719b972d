"""Loading a trained run as a library: the checkpoint, its dataset settings and the restored model.

`attrobust evaluate` / `attack` and the scripts under `scripts/` use these, so a checkpoint is read, checked and
restored one way everywhere: `read_trained` finds and checks the checkpoint (tensors and plain types only, finite
weights, the fields attrobust writes), `checkpoint_dataset` gives the dataset settings it was trained with (never
where the files are), `restore_model` builds the model on that dataset and loads the weights.

Example (a script): `path, payload = read_trained("outputs/train/<run>")`,
`model, splits = restore_model(path, payload, plain_dataset(payload["dataset_cfg"]))`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from attrobust.attacks.threat import THREAT_KEYS, ThreatModel
from attrobust.config import config_dir
from attrobust.data import DATASETS
from attrobust.data.base import Splits
from attrobust.engine.checkpoint import check_finite_weights, check_model_fields, find_model_checkpoint, load_checkpoint
from attrobust.errors import AttrobustError, choices
from attrobust.models import build_model, check_normalisation, export_plain
from attrobust.models.external import ExternalModel, build_external, files_digest
from attrobust.provenance import config_hash
from attrobust.registry import construct
from attrobust.reporting.settings import flat

log = logging.getLogger("attrobust")
# dataset keys that say where files are: taken from this run's config, never from a checkpoint
DATA_LOCATION_KEYS = ("root", "path")


def read_trained(checkpoint: str | Path) -> tuple[Path, dict[str, Any]]:
    """The model checkpoint of a run dir (its model.pt) or a .pt file, and its checked contents."""
    path = find_model_checkpoint(Path(checkpoint))
    payload = load_checkpoint(path)
    check_model_fields(payload, path)
    check_finite_weights(payload["model_state"], path)
    return path, payload


@contextmanager
def stored_in(path: Path, what: str) -> Iterator[None]:
    """Errors raised while building from settings read out of checkpoint `path` say so: the user did not type them."""
    try:
        yield
    except AttrobustError as error:
        raise AttrobustError(f"{path} stores {what} that cannot be used: {error} (the value comes from the "
                             f"checkpoint, not the command line: it was written by another attrobust version or "
                             f"edited; train it again)") from error


def check_stored_dataset(path: Path, dataset: Mapping[str, Any], threat: Mapping[str, Any] | None = None) -> None:
    """The dataset settings (and threat model) taken from checkpoint `path` (resolved) build, or one line that blames
    the checkpoint."""
    with stored_in(path, "dataset settings"):
        DATASETS.build(dataset)
    if threat is not None:
        with stored_in(path, "threat settings"):
            construct(ThreatModel, threat, "'threat' settings", "threat")


def restore_model(path: Path, payload: Mapping[str, Any], dataset: Mapping[str, Any]) -> tuple[nn.Module, Splits]:
    """The checkpoint's model with its weights, built for `dataset` (plain settings), and that dataset's splits."""
    spec = DATASETS.build(dataset)
    splits = spec.load()
    check_normalisation(spec, splits.image_shape[0])
    with stored_in(path, "model settings"):
        model = build_model(payload["model_cfg"], spec, splits.image_shape, splits.num_classes)
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as error:
        raise AttrobustError(f"the weights in {path} do not fit model '{payload['model_cfg']['name']}' on "
                             f"dataset '{splits.name}' (trained on '{payload['dataset_cfg']['name']}')") from error
    return export_plain(model).eval(), splits


def restore_external(model_cfg: Mapping[str, Any], dataset: Mapping[str, Any]) -> tuple[nn.Module, Splits,
                                                                                     dict[str, Any]]:
    """A model of your own (`model=external`, attrobust/models/external.py) on `dataset`, its splits, and the fields
    of a checkpoint that name it in result rows: run_id `external-<digest>` (of its files), model = its source."""
    settings = construct(ExternalModel, model_cfg, "model 'external'", "model")
    spec = DATASETS.build(dataset)
    splits = spec.load()
    try:
        model = build_external(settings, tuple(spec.mean), tuple(spec.std), splits.image_shape, splits.num_classes)
    except ValueError as error:
        raise AttrobustError(f"model 'external': {error}") from error
    if not any(True for _ in model.parameters()):
        raise AttrobustError(f"model.source={settings.source}: the network has no parameters (nothing was trained); "
                             f"give a network with its weights")
    check_finite_weights(model.state_dict(), Path(settings.weights or settings.source))
    identity = config_hash({"model": dict(model_cfg), "files": files_digest(settings.files())})
    if settings.kind == "function":
        log.info("model.source=%s: the identity of this model (run id external-%s) covers its settings and weights, "
                 "not the code of the function: a changed function resumes or merges with the old one's rows",
                 settings.source, identity)
    described = settings.source + (f" + {Path(settings.weights).name}" if settings.weights else "")
    payload = {"run_id": f"external-{identity}", "model_cfg": {**dict(model_cfg), "name": described},
               "reg_cfg": {"name": "external"}, "config_hash": identity, "epoch": None,
               "setting": {**flat({"model": dict(model_cfg)}), "model.files": identity}}
    return model, splits, payload


def checkpoint_dataset(stored: Mapping[str, Any], dataset_path: str | None = None) -> DictConfig:
    """The dataset settings a checkpoint was trained with, over the current `conf/dataset/<name>.yaml` (new keys).

    Where the files are is never taken from a checkpoint (a shared one could point anywhere): the data root is this
    run's `paths.data`, and the folder of a `folder` / `npz` dataset is `dataset_path`.
    """
    name = str(stored.get("name", ""))
    if name not in DATASETS.names():
        raise AttrobustError(f"the checkpoint was trained on dataset '{name}', which this attrobust does not know; "
                             f"choose one with dataset=NAME ({choices(DATASETS.names())})")
    settings = {key: value for key, value in stored.items() if key not in (*DATA_LOCATION_KEYS, *THREAT_KEYS)}
    if "${" in repr(settings):  # plain values only: an interpolation (${oc.env:...}) would be resolved here
        raise AttrobustError(f"the checkpoint's dataset settings hold an interpolation ('${{...}}'); pass the dataset "
                             f"with dataset={name} instead")
    base = OmegaConf.load(config_dir() / "dataset" / f"{name}.yaml")
    base.pop("defaults", None)  # the dataset's default model: a Hydra instruction, not a dataset field
    settings.pop("download", None)  # a checkpoint never makes attrobust fetch anything (the YAML's default: false)
    merged = OmegaConf.merge(base, settings)
    assert isinstance(merged, DictConfig)
    if "path" in base.keys():  # the user's own files (`path: ???` in its YAML)
        if dataset_path is None:
            raise AttrobustError(f"the checkpoint was trained on your own '{name}' data; pass its folder with "
                                 f"dataset_path=DIR (a checkpoint never chooses which files are read)")
        merged.path = dataset_path
    return merged


def restore_checkpoint(checkpoint: str | Path, dataset_path: str | None = None) -> tuple[nn.Module, Splits,
                                                                                           dict[str, Any]]:
    """A trained model outside a command (scripts, notebooks): its weights on the dataset it was trained on (data
    under ./data or $ATTROBUST_DATA; `dataset_path`: the folder of a `folder` / `npz` dataset), its splits and its
    checkpoint's payload. Commands restore with `attrobust.tasks.restore.load_trained`, on these same pieces."""
    path, payload = read_trained(checkpoint)
    model, splits = restore_model(path, payload, plain_dataset(payload["dataset_cfg"], dataset_path))
    return model, splits, payload


def checkpoint_threat(payload: Mapping[str, Any]) -> DictConfig | None:
    """The threat model a checkpoint was trained with, over its dataset's default `conf/threat/<name>.yaml` (keys it
    does not record): its `threat_cfg`, or in a checkpoint written before the threat model had its own group, the
    threat keys of its `dataset_cfg` (None: neither records one, and the dataset names no default)."""
    dataset = payload.get("dataset_cfg", {})
    dataset = dataset if isinstance(dataset, Mapping) else {}
    stored = payload.get("threat_cfg")
    stored = dict(stored) if isinstance(stored, Mapping) else {key: dataset[key] for key in THREAT_KEYS
                                                                if key in dataset}
    if "${" in repr(stored):  # plain values only: an interpolation (${oc.env:...}) would be resolved here
        raise AttrobustError("the checkpoint's threat settings hold an interpolation ('${...}'); pass the dataset "
                             f"with dataset={dataset.get('name', 'NAME')} instead")
    base = default_threat(str(dataset.get("name", "")))
    if base is None and not stored:
        return None
    merged = OmegaConf.merge(base or OmegaConf.create({}), stored)
    assert isinstance(merged, DictConfig)
    return merged


def default_threat(dataset: str) -> DictConfig | None:
    """The threat model `conf/dataset/<dataset>.yaml` chooses in its defaults (None: it names none)."""
    path = config_dir() / "dataset" / f"{dataset}.yaml"
    if dataset not in DATASETS.names() or not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults", []) or []:
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                if str(key).startswith("/threat@") and (config_dir() / "threat" / f"{value}.yaml").is_file():
                    loaded = OmegaConf.load(config_dir() / "threat" / f"{value}.yaml")
                    assert isinstance(loaded, DictConfig)
                    return loaded
    return None


def plain_dataset(stored: Mapping[str, Any], dataset_path: str | None = None) -> dict[str, Any]:
    """`checkpoint_dataset` resolved outside a command: data under `conf/paths/default.yaml`'s folder (./data, or
    $ATTROBUST_DATA)."""
    paths = OmegaConf.load(config_dir() / "paths" / "default.yaml")
    merged = OmegaConf.create({"paths": paths, "dataset": checkpoint_dataset(stored, dataset_path)})
    plain = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(plain, dict)
    return plain["dataset"]
