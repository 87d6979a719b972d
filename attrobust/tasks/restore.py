"""The one way commands and scripts restore a trained model: `load_trained(cfg)` -> `TrainedModel`, the model with
the test images an evaluation selected and every setting it runs with, checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from attrobust.attacks import prediction_attack
from attrobust.config import to_plain
from attrobust.data.base import ImageSet
from attrobust.engine import distributed
from attrobust.engine.accel import Accel
from attrobust.engine.evaluate import EvalSettings
from attrobust.engine.selection import choose_images
from attrobust.errors import AttrobustError
from attrobust.provenance import git_commit
from attrobust.reporting.rows import RunIdentity
from attrobust.reporting.settings import Flat, digest, setting_digest, stored_setting
from attrobust.tasks.common import (CommandSettings, command_settings, eval_settings, evaluation_checks,
                                    every_problem, resolve_device, settings_block, threat_model)
from attrobust.tasks.config import RunConfig
from attrobust.trained import (check_stored_dataset, checkpoint_dataset, checkpoint_threat, read_trained,
                               restore_external, restore_model)

log = logging.getLogger("attrobust")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model restored from a checkpoint, with the dataset to test it on."""

    model: torch.nn.Module
    payload: dict[str, Any]
    config: RunConfig            # the command's configuration
    test: ImageSet               # the selected test images (eval.indices, classes, sample, num_examples)
    dataset_name: str            # as the training rows name it (`folder:<dir>`, `npz:<dir>` for your own data)

    @property
    def plain(self) -> dict[str, Any]:
        """The resolved config of the command, as hashed and recorded."""
        return self.config.plain

    @property
    def settings(self) -> CommandSettings:
        return self.config.settings

    @property
    def eval_settings(self) -> EvalSettings:
        return self.config.eval

    @property
    def accel(self) -> Accel:
        return self.config.accel

    @property
    def setting(self) -> Flat:
        """The trained model's settings but its seed (reporting/settings.py)."""
        return stored_setting(self.payload)

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def identity(self, attack: str, evaluation: Flat) -> RunIdentity:
        return RunIdentity(self.payload["run_id"], self.dataset_name, self.payload["model_cfg"]["name"],
                           self.payload["reg_cfg"]["name"], attack, self.seed, git_commit(),
                           self.payload["config_hash"], setting_digest(self.setting), digest(evaluation))

    def figure_title(self, what: str) -> str:
        """A figure's title in a reader's words: the method (preset or regulariser), the model, the dataset, then
        `what` ('topk attack on ig(100), eps 0.3, 100 steps')."""
        method = self.setting.get("experiment") or self.payload["reg_cfg"]["name"]
        return f"{method} ({self.payload['model_cfg']['name']}) on {self.dataset_name}: {what}"


def load_trained(cfg: DictConfig) -> TrainedModel:
    """The model of `cfg.checkpoint` on `cfg.dataset` (default: the dataset it was trained on, with its eps), or with
    `model=external` a model of your own on `cfg.dataset` (attrobust/models/external.py)."""
    external = OmegaConf.select(cfg, "model.name", throw_on_missing=False) == "external"
    checkpoint = OmegaConf.select(cfg, "checkpoint", throw_on_missing=False)
    has_checkpoint = not (checkpoint is None or OmegaConf.is_missing(cfg, "checkpoint"))
    if external:
        if has_checkpoint:
            raise AttrobustError(f"checkpoint={checkpoint} and model=external both name the model; give one")
        if cfg.get("dataset") is None:
            raise AttrobustError("model=external needs the data to evaluate it on: dataset=NAME (your own images: "
                                 "dataset=folder dataset.path=DIR)")
        with open_dict(cfg):
            cfg.checkpoint = None
    elif not has_checkpoint:
        raise AttrobustError("missing value for 'checkpoint'; pass checkpoint=RUN_DIR (outputs/train/...) or a .pt "
                             "(a model of your own: model=external)")
    else:
        path, payload = read_trained(str(checkpoint))
        dataset_stored = cfg.get("dataset") is None
        if dataset_stored:
            with open_dict(cfg):
                cfg.dataset = checkpoint_dataset(payload["dataset_cfg"], cfg.get("dataset_path"))
                if cfg.get("threat") is None:  # the threat model it was trained under (attrobust/attacks/threat.py)
                    cfg.threat = checkpoint_threat(payload)
    plain = to_plain(cfg)
    if not external and dataset_stored:
        check_stored_dataset(path, plain["dataset"], plain.get("threat"))
    config = evaluation_config(plain)
    device = distributed.device_for_rank(resolve_device(config.settings.device))
    if external:
        model, splits, payload = restore_external(config.model_cfg, config.dataset_cfg)
        where = f"model.source={config.model_cfg['source']}"
    else:
        model, splits = restore_model(path, payload, config.dataset_cfg)
        where = f"{path} (epoch {payload.get('epoch', 'final')})"
    test = choose_images(splits.test, config.eval, splits.num_classes, config.seed)
    log.info("loaded %s for %s: %d test images", where, splits.name, len(test))
    return TrainedModel(config.accel.prepare(model.to(device).eval()), payload, config, config.accel.data(test),
                        splits.name)


def evaluation_config(plain: dict[str, Any]) -> RunConfig:
    """The typed settings of an evaluate / attack / explain config (resolved), every bad one refused in one line."""
    every_problem(evaluation_checks(plain))
    return RunConfig(plain, command_settings(plain), eval_settings(plain["eval"]),
                     settings_block(Accel, plain.get("accel", {}), "accel"),
                     threat_model(plain) if plain.get("threat") is not None else None,
                     attack=prediction_attack(plain["attack"]) if "attack" in plain and "attributions" in plain
                     else None)
