"""attrobust from Python (notebooks, scripts): evaluate a model of your own on a DataLoader or tensors, with the same
per-image rows, result rows and tables as `attrobust evaluate`, and the same numbers for the same images and seed
(tests/test_api.py checks it against the command).

    from attrobust import api
    result = api.evaluate(net, loader, "dataset=mnist_mini", "explainer=gradient", "eval.num_examples=100")
    result.table                  # the table the command prints
    result.rows                   # results.csv: a row per line and measure, with its interval and n
    result.per_image["attacks"]   # each evaluation part's per-image rows
    result.examples()             # examples.npz: images, perturbed images, maps and per-image measures

The overrides are the command's own (`attrobust evaluate --help`, `attrobust list GROUP`). The model is a network
taking float32 NCHW images in [0, 1] with its normalisation inside it, or a training run's folder. The data is a
DataLoader (any iterable of (images, labels) batches), an (images, labels) pair of tensors, or None for the test split
of `dataset=NAME`. `dataset=NAME` also chooses the threat model (eps, attack settings) and names the rows; for data of
no attrobust dataset, name the threat model instead: `threat=your_data threat.eps=0.0314` (conf/threat/). Each
evaluation writes a run folder as the command does (`out`, default outputs/api/<time>).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from attrobust import overrides as override_checks
from attrobust import rundir
from attrobust.atomic import write_text_atomic
from attrobust.config import config_dir, register_resolvers, to_plain, without_logger
from attrobust.data import DATASETS
from attrobust.data.base import ImageSet
from attrobust.engine.selection import choose_images
from attrobust.errors import AttrobustError
from attrobust.models.external import wrap_network
from attrobust.models.normalize import NormalizedModel
from attrobust.parts import Request
from attrobust.provenance import PROVENANCE_FILE, provenance
from attrobust.reporting.evaluation import PER_IMAGE_FILES
from attrobust.tasks.common import resolve_device
from attrobust.tasks.evaluate import run_evaluation
from attrobust.tasks.restore import TrainedModel, evaluation_config, load_trained
from attrobust.trained import restore_checkpoint

log = logging.getLogger("attrobust")
Data = Iterable[Any] | tuple[Tensor, Tensor] | None


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` wrote, read back: its folder, the table, the result rows and each part's per-image rows."""

    folder: Path
    table: pd.DataFrame
    rows: pd.DataFrame
    per_image: dict[str, pd.DataFrame]

    def examples(self) -> dict[str, np.ndarray]:
        """examples.npz (the figure's images): images, perturbed images, maps, masks, eps, index, label and each
        per-image measure, as plain arrays."""
        with np.load(self.folder / "examples.npz", allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}


@dataclass(frozen=True)
class Run:
    """A trained run: its model (float32 NCHW images in [0, 1] -> logits), its dataset's test images and labels,
    and its checkpoint's fields."""

    model: nn.Module
    images: Tensor
    labels: Tensor
    payload: dict[str, Any]


def load_run(run: str | Path, dataset_path: str | None = None) -> Run:
    """The model of a training run folder (or checkpoint file) with its dataset's test split (`dataset_path`: the
    folder of a `folder` / `npz` dataset)."""
    model, splits, payload = restore_checkpoint(run, dataset_path)
    images, labels = splits.test.batch(slice(None), torch.device("cpu"))
    return Run(model, images, labels, payload)


def images(dataset: str = "mnist_mini", split: str = "test", **settings: Any) -> tuple[Tensor, Tensor]:
    """A dataset's split as float32 NCHW images in [0, 1] and int64 labels (`settings`: its YAML's keys)."""
    if split not in ("train", "test"):
        raise AttrobustError(f"split={split!r}; choose train or test")
    cfg = compose("evaluate", [f"dataset={dataset}", *(f"dataset.{key}={value}" for key, value in settings.items()),
                               "checkpoint=null"])
    splits = DATASETS.build(to_plain(cfg)["dataset"]).load()
    return getattr(splits, split).batch(slice(None), torch.device("cpu"))


def compose(command: str, overrides: list[str]) -> DictConfig:
    """The config `attrobust COMMAND OVERRIDES` runs with (Hydra's compose API: no run folder, no sweep), checked
    as the command checks its overrides; the trackers' block (logger=) left out."""
    register_resolvers()
    override_checks.check_group_choices(overrides, None)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=command, overrides=overrides)
    return without_logger(cfg)


def evaluate(model: nn.Module | str | Path, data: Data = None, *overrides: str,
             out: str | Path | None = None) -> Evaluation:
    """`attrobust evaluate OVERRIDES` of `model` on `data` (module doc), written to `out`, read back."""
    given = override_checks.threat_spelling(override_checks.attack_spelling(list(overrides), old=False))
    named = {item.split("=", 1)[0].lstrip("+~") for item in given if "=" in item}
    if "logger" in named or any(key.startswith("logger.") for key in named):
        raise AttrobustError("api.evaluate does not track to an experiment tracker (logger=...): log its Evaluation "
                             "with your tracker's own client, or run `attrobust evaluate ... logger=NAME`")
    if isinstance(model, (str, Path)):
        given.append(f"checkpoint='{model}'")
    elif "dataset" not in named:  # the threat group is chosen by a dataset's defaults: without one, add it
        given = [f"+{item}" if item.startswith("threat=") else item for item in given]
    cfg = compose("evaluate", given)
    trained = run_under_test(cfg, data) if isinstance(model, (str, Path)) else module_under_test(cfg, model, data)
    folder = Path(out) if out is not None else new_folder(Path("outputs") / "api")
    with rundir.hold(folder):
        job = rundir.Job(folder, on_start=lambda: _snapshot(folder, cfg, ["attrobust.api.evaluate", *given]))
        request = Request(trained.config.attack, "attribution_attack" if trained.settings.attributions else None)
        # in a context of its own, as the command's job runs: the progress plan it sets ends with it
        table = contextvars.copy_context().run(run_evaluation, trained, job, request)
    assert table is not None  # a whole evaluation (sharding is the command's)
    per_image = {part: pd.read_csv(folder / name) for part, name in PER_IMAGE_FILES.items()
                 if (folder / name).is_file()}
    return Evaluation(folder, table, pd.read_csv(folder / "results.csv"), per_image)


def new_folder(parent: Path) -> Path:
    """A run folder of its own under `parent`, named by the time (two evaluations never share one)."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for number in range(1000):
        folder = parent / (stamp if number == 0 else f"{stamp}_{number}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise AttrobustError(f"no free run folder under {parent} for {stamp}; pass out=FOLDER")


def run_under_test(cfg: DictConfig, data: Data) -> TrainedModel:
    """A training run's model as `evaluate checkpoint=RUN` restores it, with the images of `data` when given."""
    trained = load_trained(cfg)
    if data is None:
        return trained
    test = image_set(data)
    num_classes = int(trained.plain["dataset"].get("num_classes") or _classes(trained.model, test))
    check_labels(test, num_classes)
    chosen = choose_images(test, trained.eval_settings, num_classes, trained.seed)
    return replace(trained, test=trained.accel.data(chosen))


def module_under_test(cfg: DictConfig, model: nn.Module, data: Data) -> TrainedModel:
    """A network of your own, with the images of `data` (or the dataset's test split), as `evaluate` runs it."""
    with open_dict(cfg):
        cfg.checkpoint = None
    if cfg.get("dataset") is None and cfg.get("threat") is None:
        raise AttrobustError("api.evaluate needs the data's dataset (dataset=NAME) or, for data of your own, its "
                             "threat model (threat=NAME, e.g. threat=your_data threat.eps=0.0314)")
    plain = to_plain(cfg)
    if data is None and plain.get("dataset") is None:
        raise AttrobustError("api.evaluate: without data, name the dataset whose test images to use (dataset=NAME)")
    test = DATASETS.build(plain["dataset"]).load().test if data is None else image_set(data)
    if not any(True for _ in model.parameters()):
        raise AttrobustError(f"the model ({type(model).__name__}) has no parameters (nothing was trained); give a "
                             f"network with its weights")
    network = model if isinstance(model, NormalizedModel) else wrap_network(model, [0.0], [1.0],
                                                                             tuple(test.images.shape[1:]))
    num_classes = int((plain.get("dataset") or {}).get("num_classes") or _classes(network, test))
    check_labels(test, num_classes)
    plain["dataset"] = plain.get("dataset") or {"name": "tensors", "num_classes": num_classes}
    config = evaluation_config(plain)
    device = resolve_device(config.settings.device)
    identity = weights_digest(network)
    named = type(model.net if isinstance(model, NormalizedModel) else model).__name__
    payload = {"run_id": f"api-{identity}", "model_cfg": {"name": named},
               "reg_cfg": {"name": "external"}, "config_hash": identity, "epoch": None,
               "setting": {"model.class": f"{type(model).__module__}.{type(model).__qualname__}",
                           "model.weights": identity}}
    chosen = choose_images(test, config.eval, num_classes, config.seed)
    return TrainedModel(config.accel.prepare(network.to(device).eval()), payload, config, config.accel.data(chosen),
                        str(plain["dataset"]["name"]))


def image_set(data: Data) -> ImageSet:
    """The images of a DataLoader (or iterable of batches) or an (images, labels) pair as attrobust holds them:
    uint8 NCHW, converted batch by batch. Images must be float NCHW in [0, 1] (normalisation belongs inside the
    model); values off the 1/255 grid are rounded to it, with a warning naming the largest change. Labels are class
    indices."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(part, Tensor) for part in data):
        batches: Iterable[Any] = [data]
    else:
        batches = data  # type: ignore[assignment]
    xs, ys, change = [], [], 0.0
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise AttrobustError("data must give (images, labels) batches (a DataLoader of a TensorDataset, say)")
        x, y = torch.as_tensor(batch[0]).detach().cpu(), torch.as_tensor(batch[1]).detach().cpu()
        if x.ndim != 4 or not x.is_floating_point() or not bool(((x >= 0) & (x <= 1)).all()):
            raise AttrobustError(f"images must be float NCHW in [0, 1] (normalisation inside the model), got "
                                 f"{x.dtype} {tuple(x.shape)}" + (f" in [{x.min().item():.3g}, {x.max().item():.3g}]"
                                                                 if x.numel() else ""))
        if y.ndim != 1 or len(y) != len(x) or (y.is_floating_point() and not bool((y == y.round()).all())):
            raise AttrobustError(f"labels must be class indices, one per image (shape ({len(x)},)), got {y.dtype} "
                                 f"{tuple(y.shape)}")
        quantised = (x.float() * 255).round()
        change = max(change, (quantised / 255 - x.float()).abs().max().item() if x.numel() else 0.0)
        xs.append(quantised.to(torch.uint8))
        ys.append(y.long())
    if not xs or sum(len(x) for x in xs) == 0:
        raise AttrobustError("data gave no images")
    if change > 1e-6:
        log.warning("the images are not on the 1/255 grid of 8-bit images, which attrobust holds: rounded to it "
                    "(largest change %.3g)", change)
    return ImageSet(torch.cat(xs), torch.cat(ys))


def check_labels(test: ImageSet, num_classes: int) -> None:
    """Every label names one of the model's `num_classes` classes."""
    low, high = int(test.labels.min()), int(test.labels.max())
    if low < 0 or high >= num_classes:
        raise AttrobustError(f"labels run from {low} to {high}, and the model has {num_classes} classes (0 .. "
                             f"{num_classes - 1})")


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers, in order (its identity in result rows)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _classes(model: nn.Module, test: ImageSet) -> int:
    """The number of the model's outputs (its classes)."""
    x, _ = test.head(1).batch(slice(0, 1), next(model.parameters()).device)
    with torch.no_grad():
        return int(model(x).shape[-1])


def _snapshot(folder: Path, cfg: DictConfig, command: list[str]) -> None:
    """The run folder's config snapshot and provenance, as the command writes them."""
    write_text_atomic(folder / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text_atomic(folder / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(command[1:]))
    plain = OmegaConf.to_container(cfg, resolve=True)
    write_text_atomic(folder / PROVENANCE_FILE, json.dumps(provenance(plain, command), indent=1) + "\n")
