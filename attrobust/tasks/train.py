"""`attrobust train`: fit a model with a regulariser (objective), then evaluate it (natural accuracy, accuracy under
attack). Everything the run needs is built and validated before any training starts, so a bad value fails in seconds
with one clear line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from attrobust.attacks import prediction_attack
from attrobust.config import to_plain
from attrobust.data import DATASETS
from attrobust.data.base import ImageSet, Splits
from attrobust.engine import distributed
from attrobust.engine.accel import NO_ACCEL, Accel
from attrobust.engine.checkpoint import MODEL_FILE, TRAIN_STATE_FILE, save_checkpoint
from attrobust.engine.evaluate import PredictionAttack, accuracy_counts, accuracy_per_image, evaluate_accuracy
from attrobust.engine.selection import choose_images
from attrobust.engine.train import TrainSettings, fit
from attrobust.errors import AttrobustError, choices
from attrobust.models import MODELS, build_model, traits_of
from attrobust.optim import OPTIMIZERS
from attrobust.parts.accuracy import log_accuracy
from attrobust.provenance import config_hash, git_commit, run_id
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.reporting.caveats import training_caveats, warmup_caveat
from attrobust.reporting.intervals import NO_INTERVALS, Bootstrap
from attrobust.reporting.rows import RunIdentity, accuracy_rows
from attrobust.reporting.settings import digest, evaluation_setting, training_setting
from attrobust.reporting.tables import write_results
from attrobust.rundir import Job
from attrobust.tasks.common import (chosen_preset, command_settings, eval_settings, every_problem, resolve_device,
                                    settings_block, threat_model)
from attrobust.tasks.config import RunConfig

log = logging.getLogger("attrobust")

# reg keys that change how a step uses memory, not its result: a run may resume with other values
MEMORY_ONLY_KEYS = ("max_points", "recompute")


def train(cfg: DictConfig, job: Job) -> pd.DataFrame | None:
    """Train `cfg.model` on `cfg.dataset` with `cfg.reg`; then (eval_at_end) evaluate under `cfg.attack`.

    Writes `last.pt` every epoch, `model.pt` at the end, `train_log.csv`, and `results.csv`/`table.*`.
    """
    config = checked_config(to_plain(cfg))
    settings, accel, reg = config.train, config.accel, config.reg_cfg
    assert settings is not None
    device = distributed.device_for_rank(resolve_device(config.settings.device))
    here = distributed.init_from_environment(device)
    run_dir = distributed.shared_run_dir(job.run_dir)
    if settings.batch_size < here.size:
        raise AttrobustError(f"train.batch_size={settings.batch_size} is smaller than the {here.size} processes")
    objective = REGULARIZERS.build(reg)
    if here.size > 1 and objective.couples_the_batch:
        remedy = ("use reg.gradient_of=per_example with reg.weight=lambda / train.batch_size (reg.reduction=mean), "
                  "or one process") if reg["name"] == "input_grad" else "train it in one process"
        raise AttrobustError(f"reg={reg['name']} has a whole-batch loss, which {here.size} processes cannot "
                             f"split by examples; {remedy}")
    optimizer_spec = OPTIMIZERS.build(config.optim_cfg)
    splits = DATASETS.build(config.dataset_cfg).load()
    try:
        objective.check_fits(splits.image_shape)
    except ValueError as error:
        raise AttrobustError(f"reg '{reg['name']}': {error}") from error
    torch.manual_seed(config.seed)
    model = built_model(config, objective, splits, device)
    optimizer = optimizer_spec.build(model.parameters())
    metadata = run_metadata(config, run_dir)
    examples = training_examples(settings, splits)
    plan = settings.plan(examples)
    if config.optim_cfg.get("schedule") == "cosine":  # the rate of every epoch depends on the run's length
        metadata["schedule_epochs"] = plan.epochs
    log.info("training %s on %s (%d images, %d steps of %d in %d epochs) with reg=%s on %s; run dir %s",
             config.model_cfg["name"], splits.name, examples, plan.total, settings.batch_size, plan.epochs,
             reg["name"], device, run_dir)
    if isinstance(objective, AdversarialObjective):
        for line in warmup_caveat(objective.eps_warmup_epochs, plan.epochs, objective.eps):
            log.warning(line)
    if settings.test_every is not None and settings.test_every > plan.epochs:
        log.warning("train.test_every=%d is longer than the run's %d epoch(s): no test accuracy will be logged; set "
                    "train.test_every<=%d", settings.test_every, plan.epochs, plan.epochs)
    test = accel.data(choose_images(splits.test, config.eval, splits.num_classes, config.seed))

    def test_accuracy() -> float:
        return evaluate_accuracy(model, test, None, config.eval.batch_size).natural_accuracy_pct / 100

    history = fit(model, objective, optimizer, lambda epoch, step: optimizer_spec.lr_at(epoch, plan.epochs, step),
                  accel.data(splits.train), settings, config.seed, run_dir, metadata, accel,
                  on_start=job.mark_started, test_accuracy=test_accuracy, on_epoch=job.on_epoch)
    distributed.finish()  # every rank has the same weights now; rank 0 saves and evaluates
    if not here.is_main:
        return None
    for line in training_caveats(history, splits.num_classes):
        log.warning(line)
    save_checkpoint({**metadata, "history": history, "model_state": model.state_dict()}, run_dir / MODEL_FILE,
                    "model")
    if not settings.keep_last:  # model.pt holds the result; the training state (2-3x its size) is only for resuming
        (run_dir / TRAIN_STATE_FILE).unlink(missing_ok=True)
    return None if config.attack is None else evaluate_at_end(config, model, test, metadata, splits.name, run_dir)


def checked_config(plain: dict[str, Any]) -> RunConfig:
    """Every block of a training config built once, every bad setting refused in one line."""
    settings = command_settings(plain)
    if plain["model"]["name"] == "external":
        raise AttrobustError("model=external is a model you bring, for evaluate, attack and explain; train one of: "
                             f"{choices(MODELS.names())}")
    if plain["eval"].get("shard") is not None or plain["eval"].get("num_shards", 1) != 1:
        raise AttrobustError("eval.shard / eval.num_shards split `attrobust evaluate`; train evaluates its model whole "
                             "(train with eval_at_end=false, then evaluate the shards)")
    every_problem([lambda: settings_block(TrainSettings, plain["train"], "train"),
                   lambda: eval_settings(plain["eval"]), lambda: threat_model(plain),
                   lambda: settings_block(Accel, plain.get("accel", {}), "accel"),
                   lambda: DATASETS.build(plain["dataset"]), lambda: REGULARIZERS.build(plain["reg"]),
                   lambda: OPTIMIZERS.build(plain["optim"]),
                   lambda: prediction_attack(plain["attack"]) if plain["eval_at_end"] else None])
    return RunConfig(plain, settings, eval_settings(plain["eval"]),
                     settings_block(Accel, plain.get("accel", {}), "accel"), threat_model(plain),
                     settings_block(TrainSettings, plain["train"], "train"),
                     prediction_attack(plain["attack"]) if settings.eval_at_end else None)


def built_model(config: RunConfig, objective: Any, splits: Splits, device: torch.device) -> torch.nn.Module:
    """The model to train, on `device`, checked against the objective, with the same weights on every process."""
    model = build_model(config.model_cfg, DATASETS.build(config.dataset_cfg), splits.image_shape,
                        splits.num_classes).to(device)
    if objective.needs_lipschitz_model and traits_of(model).lipschitz_constant is None:
        raise AttrobustError(f"reg={config.reg_cfg['name']} trains 1-Lipschitz networks and model="
                             f"{config.model_cfg['name']} is not one (its margin would bound nothing); use "
                             f"model=lipschitz_cnn (or +experiment=mnist_mini_lipschitz_hkr)")
    objective.check_model(model)
    model = config.accel.prepare(model)
    distributed.broadcast_parameters(model)
    return model


def run_metadata(config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """What a checkpoint records of its run, with the key a resumed run must match."""
    settings = config.train
    assert settings is not None
    resume_fields = {"model": config.model_cfg, "optim": config.optim_cfg, "seed": config.seed,
                     "reg": {k: v for k, v in config.reg_cfg.items() if k not in MEMORY_ONLY_KEYS}}
    resume_fields.update(dataset=config.dataset_cfg["name"], batch_size=settings.batch_size,
                         num_examples=settings.num_examples)
    if settings.steps is not None:  # full batches: a run counted in epochs cannot continue it (nor the reverse)
        resume_fields["full_batches"] = True
    return {"run_id": run_id(run_dir), "model_cfg": config.model_cfg, "dataset_cfg": config.dataset_cfg,
            "threat_cfg": config.block("threat"), "reg_cfg": config.reg_cfg, "seed": config.seed,
            "config_hash": config_hash(config.plain), "resume_key": config_hash(resume_fields),
            "setting": training_setting(config.plain, chosen_preset())}


def training_examples(settings: TrainSettings, splits: Splits) -> int:
    """How many training images the run sees; refused when some class has none to learn from."""
    examples = len(splits.train.head(settings.num_examples))
    if examples < splits.num_classes:
        raise AttrobustError(f"train.num_examples={settings.num_examples} gives {examples} training image(s) for "
                             f"{splits.num_classes} classes: a model cannot learn a class it never sees; train on "
                             f"at least {splits.num_classes} images (or null for all)")
    return examples


def evaluate_at_end(config: RunConfig, model: torch.nn.Module, test: ImageSet, metadata: dict[str, Any],
                    dataset: str, run_dir: Path) -> pd.DataFrame:
    """Natural accuracy and accuracy under `attack` of the trained model: result rows and tables."""
    assert config.attack is not None
    plain, setting = config.plain, metadata["setting"]
    evaluation = evaluation_setting(plain, setting, ["certify_l2"], {"attack": "attack"})
    identity = RunIdentity(metadata["run_id"], dataset, config.model_cfg["name"], config.reg_cfg["name"],
                           config.attack.describe(), config.seed, git_commit(), metadata["config_hash"],
                           digest(setting), digest(evaluation))
    rows = accuracy_at_end(model, test, config.attack, config.eval.batch_size, identity, config.seed,
                           config.accel, Bootstrap(config.eval.bootstrap, config.eval.confidence, config.seed))
    return write_results(rows, run_dir, (setting, evaluation))


def accuracy_at_end(model: torch.nn.Module, test: ImageSet, attack: PredictionAttack, batch_size: int,
                    identity: RunIdentity, seed: int, accel: Accel = NO_ACCEL,
                    bootstrap: Bootstrap = NO_INTERVALS) -> pd.DataFrame:
    """Rows for natural accuracy and accuracy under `attack` (seeded: the attack's random starts), with their
    bootstrap intervals over the test images."""
    with accel.autocast(next(model.parameters()).device):
        frame = accuracy_per_image(accel.first_order(model), test, attack, batch_size, seed)
    counts = accuracy_counts(frame)
    log_accuracy(counts, attack)
    intervals = {metric: bootstrap.proportion(frame[column].astype(bool))
                 for metric, column in (("natural_accuracy", "correct"), ("adversarial_accuracy", "robust"))}
    return accuracy_rows(identity, counts.n, counts.natural_accuracy_pct, counts.adversarial_accuracy_pct, intervals)
