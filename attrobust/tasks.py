"""One function per command: config -> components -> engine -> result rows and tables.

Each task takes the composed config and its run dir; the CLI supplies both through Hydra. Everything a run needs is
built and validated before any training starts, so a bad value fails in seconds with one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import timedelta
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
from torch import Tensor
from omegaconf import DictConfig, OmegaConf, open_dict

from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS, random_baselines
from attrobust.attacks.attribution import AttributionAttack
from attrobust.attacks.projected_ascent import pixel_amount
from attrobust.config import to_plain
from attrobust.data import DATASETS
from attrobust.data.base import ImageSet
from attrobust.atomic import save_torch_atomic
from attrobust.attributions import saliency_map
from attrobust.attributions.surrogate import NotSmoothable
from attrobust.engine.attribution import AttributionEvaluation, MeasureStore, auto_batch_size, evaluate_attributions
from attrobust.engine.examples import FigureChoice, figure_examples, figure_rows
from attrobust.engine.selection import choose_images
from attrobust.engine.faithfulness import faithfulness_per_image
from attrobust.engine.stability import stability_per_image
from attrobust.engine import distributed
from attrobust.engine.accel import NO_ACCEL, Accel
from attrobust.engine import cost
from attrobust.engine.checkpoint import MODEL_FILE, TRAIN_STATE_FILE, save_checkpoint
from attrobust.engine.evaluate import (AccuracyCounts, EvalSettings, PredictionAttack, accuracy_counts,
                                       accuracy_per_image, evaluate_accuracy)
from attrobust.engine.sharding import WHOLE, Shard
from attrobust.engine.train import TrainSettings, fit
from attrobust.errors import AttrobustError, choices
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.faithfulness import FaithfulnessMetric, build_faithfulness
from attrobust.metrics import Metric, protocol_metrics
from attrobust.models import MODELS, build_model
from attrobust.optim import OPTIMIZERS
from attrobust.provenance import PROVENANCE_FILE, config_hash, git_commit, run_id
from attrobust.registry import construct
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.reporting.caveats import headline_caveats, training_caveats, warmup_caveat
from attrobust.reporting.figures import attribution_figure, explanation_figure
from attrobust.reporting.evaluation import EVALUATION_FILE, EvaluationRecord, PerImage, merge_shards, write_evaluation
from attrobust.reporting.rows import RunIdentity, accuracy_rows
from attrobust.reporting.settings import (Flat, digest, evaluation_setting, setting_digest, stored_setting,
                                         training_setting)
from attrobust.reporting.tables import RESULTS_FILE, write_results
from attrobust.rundir import mark_started
from attrobust.stability import StabilityMetric, build_stability
from attrobust.trained import (DATA_LOCATION_KEYS, check_stored_dataset, checkpoint_dataset, read_trained,
                               restore_external, restore_model)

log = logging.getLogger("attrobust")
S = TypeVar("S")


SHARD_KEYS = ("shard", "num_shards")  # eval keys that split one evaluation, not change it
# top-level keys that say where or how an evaluation runs, not what it measures (left out of its fingerprint)
RUN_PLACE_KEYS = ("checkpoint", "device", "paths", "dataset_path", "figure_examples", "figure_images")
# how long a torchrun evaluation's ranks wait for the slowest one's shard before merging
EVALUATION_TIMEOUT = timedelta(days=2)
# reg keys that change how a step uses memory, not its result: a run may resume with other values
MEMORY_ONLY_KEYS = ("max_points", "recompute")


def train(cfg: DictConfig, run_dir: Path) -> pd.DataFrame | None:
    """Train `cfg.model` on `cfg.dataset` with `cfg.reg`; then (eval_at_end) evaluate under `cfg.attack`.

    Writes `last.pt` every epoch, `model.pt` at the end, `train_log.csv`, and `results.csv`/`table.*`.
    """
    plain = to_plain(cfg)
    command_settings(plain)
    if plain["model"]["name"] == "external":
        raise AttrobustError("model=external is a model you bring, for evaluate, attack and explain; train one of: "
                             f"{choices(MODELS.names())}")
    if plain["eval"].get("shard") is not None or plain["eval"].get("num_shards", 1) != 1:
        raise AttrobustError("eval.shard / eval.num_shards split `attrobust evaluate`; train evaluates its model whole "
                             "(train with eval_at_end=false, then evaluate the shards)")
    every_problem([lambda: _settings(TrainSettings, plain["train"], "train"),
                   lambda: _settings(EvalSettings, plain["eval"], "eval"),
                   lambda: _settings(Accel, plain.get("accel", {}), "accel"),
                   lambda: DATASETS.build(plain["dataset"]), lambda: REGULARIZERS.build(plain["reg"]),
                   lambda: OPTIMIZERS.build(plain["optim"]),
                   lambda: prediction_attack(plain["attack"]) if plain["eval_at_end"] else None])
    settings = _settings(TrainSettings, plain["train"], "train")
    eval_settings = _settings(EvalSettings, plain["eval"], "eval")
    accel = _settings(Accel, plain.get("accel", {}), "accel")
    device = distributed.device_for_rank(resolve_device(plain["device"]))
    here = distributed.init_from_environment(device)
    run_dir = distributed.shared_run_dir(run_dir)
    if settings.batch_size < here.size:
        raise AttrobustError(f"train.batch_size={settings.batch_size} is smaller than the {here.size} processes")
    spec = DATASETS.build(plain["dataset"])
    objective = REGULARIZERS.build(plain["reg"])
    if here.size > 1 and objective.couples_the_batch:
        remedy = ("use reg.gradient_of=per_example with reg.weight=lambda / train.batch_size (reg.reduction=mean), "
                  "or one process") if plain["reg"]["name"] == "input_grad" else "train it in one process"
        raise AttrobustError(f"reg={plain['reg']['name']} has a whole-batch loss, which {here.size} processes cannot "
                             f"split by examples; {remedy}")
    optimizer_spec = OPTIMIZERS.build(plain["optim"])
    attack = prediction_attack(plain["attack"]) if plain["eval_at_end"] else None
    splits = spec.load()
    try:
        objective.check_fits(splits.image_shape)
    except ValueError as error:
        raise AttrobustError(f"reg '{plain['reg']['name']}': {error}") from error
    torch.manual_seed(plain["seed"])
    model = build_model(plain["model"], spec, splits.image_shape, splits.num_classes).to(device)
    if objective.needs_lipschitz_model and "lipschitz_constant" not in model.__dict__:
        raise AttrobustError(f"reg={plain['reg']['name']} trains 1-Lipschitz networks and model="
                             f"{plain['model']['name']} is not one (its margin would bound nothing); use "
                             f"model=lipschitz_cnn (or +experiment=mnist_mini_lipschitz_hkr)")
    objective.check_model(model)
    model = accel.prepare(model)
    distributed.broadcast_parameters(model)
    optimizer = optimizer_spec.build(model.parameters())

    resume_fields = {key: plain[key] for key in ("model", "reg", "optim", "seed")}
    resume_fields["reg"] = {k: v for k, v in plain["reg"].items() if k not in MEMORY_ONLY_KEYS}
    resume_fields.update(dataset=plain["dataset"]["name"], batch_size=settings.batch_size,
                         num_examples=settings.num_examples)
    if settings.steps is not None:  # full batches: a run counted in epochs cannot continue it (nor the reverse)
        resume_fields["full_batches"] = True
    metadata = {"run_id": run_id(run_dir), "model_cfg": plain["model"], "dataset_cfg": plain["dataset"],
                "reg_cfg": plain["reg"], "seed": plain["seed"], "config_hash": config_hash(plain),
                "resume_key": config_hash(resume_fields), "setting": training_setting(plain, chosen_preset())}
    examples = len(splits.train.head(settings.num_examples))
    if examples < splits.num_classes:
        raise AttrobustError(f"train.num_examples={settings.num_examples} gives {examples} training image(s) for "
                             f"{splits.num_classes} classes: a model cannot learn a class it never sees; train on "
                             f"at least {splits.num_classes} images (or null for all)")
    plan = settings.plan(examples)
    if plain["optim"].get("schedule") == "cosine":  # the rate of every epoch depends on the run's length
        metadata["schedule_epochs"] = plan.epochs
    log.info("training %s on %s (%d images, %d steps of %d in %d epochs) with reg=%s on %s; run dir %s",
             plain["model"]["name"], splits.name, examples, plan.total, settings.batch_size, plan.epochs,
             plain["reg"]["name"], device, run_dir)

    if isinstance(objective, AdversarialObjective):
        for line in warmup_caveat(objective.eps_warmup_epochs, plan.epochs, objective.eps):
            log.warning(line)
    if settings.test_every is not None and settings.test_every > plan.epochs:
        log.warning("train.test_every=%d is longer than the run's %d epoch(s): no test accuracy will be logged; set "
                    "train.test_every<=%d", settings.test_every, plan.epochs, plan.epochs)

    def lr_at(epoch: int, step: int) -> float:
        return optimizer_spec.lr_at(epoch, plan.epochs, step)

    test = accel.data(choose_images(splits.test, eval_settings, splits.num_classes, plain["seed"]))

    def test_accuracy() -> float:
        return evaluate_accuracy(model, test, None, eval_settings.batch_size).natural_accuracy_pct / 100

    history = fit(model, objective, optimizer, lr_at, accel.data(splits.train), settings, plain["seed"], run_dir,
                  metadata, accel, on_start=lambda: mark_started(run_dir), test_accuracy=test_accuracy)
    distributed.finish()  # every rank has the same weights now; rank 0 saves and evaluates
    if not here.is_main:
        return None
    for line in training_caveats(history, splits.num_classes):
        log.warning(line)
    save_checkpoint({**metadata, "history": history, "model_state": model.state_dict()}, run_dir / MODEL_FILE,
                    "model")
    if not settings.keep_last:  # model.pt holds the result; the training state (2-3x its size) is only for resuming
        (run_dir / TRAIN_STATE_FILE).unlink(missing_ok=True)
    if attack is None:
        return None
    setting = metadata["setting"]
    evaluation = evaluation_setting(plain, setting, accuracy=True, attribution_key=None, explainer=False)
    identity = RunIdentity(metadata["run_id"], splits.name, plain["model"]["name"], plain["reg"]["name"],
                           attack.describe(), plain["seed"], git_commit(), metadata["config_hash"], digest(setting),
                           digest(evaluation))
    rows = _accuracy_rows(model, test, attack, eval_settings.batch_size, identity, plain["seed"], accel)
    return write_results(rows, run_dir, (setting, evaluation))


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
TOP_LEVEL_GROUPS = ("paths", "dataset", "model", "reg", "optim", "attack", "attribution_attack", "explainer", "eval",
                    "train", "accel", "checkpoint", "dataset_path")


def command_settings(plain: Mapping[str, Any]) -> CommandSettings:
    """The command's top-level settings, each of the right type and range (one line naming the key otherwise)."""
    names = CommandSettings.__dataclass_fields__
    unknown = sorted(set(plain) - set(names) - set(TOP_LEVEL_GROUPS))
    if unknown:
        raise AttrobustError(f"unknown setting '{unknown[0]}' (from +{unknown[0]}=... or a config file): nothing "
                             f"reads it; the top-level settings are {choices([*names, *TOP_LEVEL_GROUPS])}")
    return construct(CommandSettings, {key: value for key, value in plain.items() if key in names}, "settings", "")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model restored from a checkpoint, with the dataset to test it on."""

    model: torch.nn.Module
    payload: dict[str, Any]
    plain: dict[str, Any]        # the resolved config of the command
    settings: CommandSettings
    test: ImageSet               # the selected test images (eval.indices, classes, sample, num_examples)
    eval_settings: EvalSettings
    accel: Accel
    dataset_name: str            # as the training rows name it (`folder:<dir>`, `npz:<dir>` for your own data)

    @property
    def setting(self) -> Flat:
        """The trained model's settings but its seed (reporting/settings.py)."""
        return stored_setting(self.payload)

    def identity(self, attack: str, evaluation: Flat) -> RunIdentity:
        return RunIdentity(self.payload["run_id"], self.dataset_name, self.payload["model_cfg"]["name"],
                           self.payload["reg_cfg"]["name"], attack, self.plain["seed"], git_commit(),
                           self.payload["config_hash"], setting_digest(self.setting), digest(evaluation))


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
    plain = to_plain(cfg)
    if not external and dataset_stored:
        check_stored_dataset(path, plain["dataset"])
    every_problem(evaluation_checks(plain))
    settings = command_settings(plain)
    eval_settings = _settings(EvalSettings, plain["eval"], "eval")
    accel = _settings(Accel, plain.get("accel", {}), "accel")
    device = distributed.device_for_rank(resolve_device(plain["device"]))
    if external:
        model, splits, payload = restore_external(plain["model"], plain["dataset"])
        where = f"model.source={plain['model']['source']}"
    else:
        model, splits = restore_model(path, payload, plain["dataset"])
        where = f"{path} (epoch {payload.get('epoch', 'final')})"
    test = choose_images(splits.test, eval_settings, splits.num_classes, settings.seed)
    log.info("loaded %s for %s: %d test images", where, splits.name, len(test))
    return TrainedModel(accel.prepare(model.to(device).eval()), payload, plain, settings, accel.data(test),
                        eval_settings, accel, splits.name)


def evaluate(cfg: DictConfig, run_dir: Path) -> pd.DataFrame | None:
    """The paper's columns for a checkpoint: NA, AA under `cfg.attack`, every metric of `eval.metrics` under
    `cfg.attribution_attack` of `cfg.explainer` and under each random baseline of `eval.baselines` (skipped with
    `attributions=false`), and the explainer's stability (`eval.stability`). One line of the table per attribution
    attack, NA and AA on each. Writes the per-image rows (`accuracy.csv`, `measures.csv`, `stability.csv`), the
    result rows and tables, and `figure.png` of the attribution attack; a killed run resumes its attacks. A shard
    (`eval.shard`, or each process under torchrun) writes only its per-image rows (reporting/evaluation.py)."""
    trained = load_trained(cfg)
    attack = prediction_attack(trained.plain["attack"])
    stability = build_stability(trained.eval_settings.stability)
    faithfulness = build_faithfulness(trained.eval_settings.faithfulness)
    explainer = EXPLAINERS.build(trained.plain["explainer"]) if stability or faithfulness else None
    return run_evaluation(trained, run_dir, "attribution_attack" if trained.plain["attributions"] else None, attack,
                          explainer, stability, faithfulness)


def run_evaluation(trained: TrainedModel, run_dir: Path, attack_key: str | None,
                   accuracy_attack: PredictionAttack | None, explainer: Explainer | None = None,
                   stability: list[StabilityMetric] | None = None,
                   faithfulness: list[FaithfulnessMetric] | None = None) -> pd.DataFrame | None:
    """What `evaluate` and `attack` share: this shard's per-image rows of each part, written with `evaluation.json`;
    the result rows and tables of a whole run (or, under torchrun, of the merged shards, on rank 0)."""
    shard, here = evaluation_shard(trained.eval_settings, next(trained.model.parameters()).device)
    run_dir = distributed.shared_run_dir(run_dir)
    work_dir = run_dir if here.size == 1 else run_dir / "shards" / str(here.rank)
    suite = AttackSuite.build(trained, attack_key, work_dir, shard) if attack_key is not None else None
    pixels = trained.test.images.shape[-2] * trained.test.images.shape[-1]
    for metric in faithfulness or []:
        try:
            metric.check_fits(pixels)
        except ValueError as error:
            raise AttrobustError(f"eval.faithfulness '{metric.column}': {error}") from error
    if explainer is not None:
        explainer.check_model(trained.model)
    try:
        parts = evaluation_cost(trained, accuracy_attack, suite, explainer, stability or [], faithfulness or [], shard)
        cost.announce(parts, next(trained.model.parameters()).device, cheaper_evaluation(attack_key))
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # the estimate is a courtesy: never a failure
        log.info("no cost estimate (its calibration failed: %s)", type(error).__name__)
    mark_started(run_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / EVALUATION_FILE).unlink(missing_ok=True)  # an earlier run's: this folder's rows are being replaced
    seed = trained.plain["seed"]
    if not shard.whole:
        log.info("evaluating %s of the work (engine/sharding.py)", shard.describe())
    per_image = PerImage()
    identities: dict[str, Any] = {}
    evaluation = evaluation_setting(trained.plain, trained.setting, accuracy=accuracy_attack is not None,
                                    attribution_key=attack_key, explainer=bool(stability or faithfulness),
                                    stability=bool(stability), faithfulness=bool(faithfulness))
    certificate = _certificate(trained)
    if accuracy_attack is not None:
        per_image.accuracy = _accuracy(trained, accuracy_attack, shard, margins=certificate is not None)
        certified = "" if certificate is None else (f"; certified at L2 {certificate['l2']:g} and L-inf "
                                                    f"{certificate['linf']:g} (Lipschitz {certificate['lipschitz']:g})")
        identities["accuracy"] = asdict(trained.identity(accuracy_attack.describe() + certified, evaluation))
    if suite is not None:
        per_image.measures = suite.run(trained, work_dir, shard)
        identities["attacks"] = [(each.name, asdict(trained.identity(each.describe(), evaluation)))
                                 for each in suite.attacks]
    if explainer is not None and stability:
        for metric in (m for m in stability if m.divides_by_pixels):
            dark = float((trained.test.images < 3).float().mean())  # uint8: below 0.01 of the [0, 1] range
            log.info("%s divides the input's change by each pixel's value: %.0f%% of these images' pixels are below "
                     "0.01, so they dominate it and it can rank models unlike the other stability measures (see the "
                     "docs/stability-and-faithfulness.md); compare with max_sensitivity or local_lipschitz",
                     metric.column, 100 * dark)
        per_image.stability = stability_per_image(trained.model, trained.test, explainer, stability, seed,
                                                  trained.eval_settings.batch_size, shard)
    if explainer is not None and faithfulness:
        per_image.faithfulness = faithfulness_per_image(trained.model, trained.test, explainer, faithfulness,
                                                        trained.eval_settings.batch_size,
                                                        trained.eval_settings.attribution_batch_size, shard)
        log.info("insertion and deletion follow the model's confidence: compare explainers on one model, not models "
                 "of different confidence (see docs/stability-and-faithfulness.md)")
    if explainer is not None and (stability or faithfulness):
        parts = " and ".join(part for part, metrics in (("stability", stability), ("faithfulness", faithfulness))
                             if metrics)
        # one line of the table for both
        line = asdict(trained.identity(f"{parts} of {explainer.describe()}", evaluation))
        identities.update({part: line for part, metrics in (("stability", stability),
                                                            ("faithfulness", faithfulness)) if metrics})
    record = EvaluationRecord(evaluation_fingerprint(trained), None if shard.whole else shard.index, shard.count,
                              trained.test.index.tolist(), dict(trained.plain["eval"]), command=_command(run_dir),
                              device=next(trained.model.parameters()).device.type,
                              chunks=suite.chunks if suite is not None else {}, certificate=certificate,
                              settings={"setting": trained.setting, "evaluation": evaluation},
                              **{"accuracy": None, **identities})
    table = write_evaluation(work_dir, record, per_image)
    if suite is not None:
        suite.discard_chunks()
    if here.size > 1:
        distributed.finish()  # every shard is written
        if not here.is_main:
            return None
        table = merge_shards([run_dir / "shards" / str(rank) for rank in range(here.size)], run_dir)
    if table is None:
        log.info("wrote %s; when every shard is done, merge them: attrobust merge <the folder above the shards' "
                 "folders> (or attrobust report)", shard.describe())
        return None
    warn_about(pd.read_csv(run_dir / RESULTS_FILE))
    return table


def evaluation_cost(trained: TrainedModel, accuracy_attack: PredictionAttack | None, suite: AttackSuite | None,
                    explainer: Explainer | None, stability: list[StabilityMetric],
                    faithfulness: list[FaithfulnessMetric], shard: Shard) -> list[cost.Part]:
    """Each part's estimated seconds (engine/cost.py) for this shard's share of the selected images."""
    images = len(trained.test) / shard.count
    x, y = trained.test.head(cost.CALIBRATION_IMAGES).batch(slice(0, cost.CALIBRATION_IMAGES),
                                                            next(trained.model.parameters()).device)
    main_explainer = suite.attacks[0].explainer if suite is not None else explainer
    with trained.accel.autocast(x.device):
        times = cost.calibrate(trained.model, x, y, main_explainer)
    parts = []
    if accuracy_attack is not None:
        steps = getattr(accuracy_attack, "passes_per_image", None) or \
            getattr(accuracy_attack, "steps", 1) * getattr(accuracy_attack, "restarts", 1)
        parts.append(cost.Part("accuracy", images * (steps + 1 / 3) * times.first_order, "evaluate"))
    for each in suite.attacks if suite is not None else ():
        runs = each.restarts_to_run
        per_image = runs * (each.steps * times.attack_step + 2 * times.explainer) if each.ascends else \
            runs * (each.steps + 1) * times.explainer
        parts.append(cost.Part(each.name, images * per_image, f"attack {each.name}"))
    for metric in stability:
        parts.append(cost.Part(metric.column, images * metric.samples * times.explainer, f"stability {metric.column}"))
    if faithfulness:
        points = sum(metric.steps + 1 for metric in faithfulness)
        parts.append(cost.Part("faithfulness", images * (times.explainer + points * times.first_order / 3),
                               "faithfulness"))
    return parts


def cheaper_evaluation(attack_key: str | None) -> str:
    """What makes an evaluation cheaper on a CPU (the estimate scales with each of these)."""
    key = attack_key or "attribution_attack"
    return (f"fewer images (eval.num_examples=100), one run of the attack ({key}.restarts=1), fewer steps "
            f"({key}.steps=20), one control (eval.baselines=[random_noise]), or fewer IG points (explainer.steps=20)")


def figure_title(trained: TrainedModel, what: str) -> str:
    """A figure's title in a reader's words: the method (preset or regulariser), the model, the dataset, then `what`
    ('topk attack on ig(100), eps 0.3, 100 steps')."""
    method = trained.setting.get("experiment") or trained.payload["reg_cfg"]["name"]
    return f"{method} ({trained.payload['model_cfg']['name']}) on {trained.dataset_name}: {what}"


def chosen_preset() -> str | None:
    """The `+experiment=NAME` preset of this Hydra job (None outside Hydra or without one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


def evaluation_fingerprint(trained: TrainedModel) -> str:
    """What the shards of one evaluation share: the config without the shard keys and the settings that only say
    where or how it runs (device, data folders, page-locked memory, figures), and the checkpoint itself. The device
    type, which sizes the units of work, is checked at the merge."""
    plain = {key: value for key, value in trained.plain.items() if key not in RUN_PLACE_KEYS}
    plain["eval"] = {key: value for key, value in plain["eval"].items() if key not in SHARD_KEYS}
    plain["dataset"] = {key: value for key, value in plain["dataset"].items() if key not in DATA_LOCATION_KEYS}
    plain["accel"] = {key: value for key, value in plain.get("accel", {}).items() if key != "pin_memory"}
    checkpoint = [trained.payload.get(key) for key in ("run_id", "config_hash", "epoch")]
    return config_hash({"config": plain, "checkpoint": checkpoint})


def _command(run_dir: Path) -> list[str]:
    """The command that ran this job (provenance.json), to run a shard again."""
    try:
        return list(json.loads((run_dir / PROVENANCE_FILE).read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def evaluation_shard(settings: EvalSettings, device: torch.device) -> tuple[Shard, distributed.World]:
    """This process's shard: `eval.shard` of `eval.num_shards`, or under torchrun (WORLD_SIZE > 1) its rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if settings.shard is not None or settings.num_shards > 1:
            raise AttrobustError("eval.shard / eval.num_shards and torchrun both split the evaluation; under torchrun "
                                 "each process takes its rank's shard: leave eval.shard and eval.num_shards unset")
        here = distributed.init_from_environment(device, timeout=EVALUATION_TIMEOUT)
        return Shard(here.rank, here.size), here
    if settings.num_shards > 1 and settings.shard is None:
        raise AttrobustError(f"eval.num_shards={settings.num_shards} needs eval.shard=0 .. {settings.num_shards - 1} "
                             f"(one run per shard; or torchrun --nproc_per_node={settings.num_shards} with neither)")
    return Shard(settings.shard or 0, settings.num_shards), distributed.World()


@dataclass
class AttackSuite:
    """An attack on explanations and its random controls (`eval.baselines`, same threat model, budget, selection
    and explainer), scored by the protocol's metrics; what `evaluate` and `attack` share."""

    attacks: tuple[AttributionAttack, ...]  # the attack first, then its controls
    metrics: tuple[Metric, ...]
    stores: list[MeasureStore] = dataclasses.field(default_factory=list)  # of the last `run`
    chunks: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # of the last `run`: [chunk, piece]

    @classmethod
    def build(cls, trained: TrainedModel, key: str, run_dir: Path, shard: Shard = WHOLE) -> AttackSuite:
        """The attack configured at `key` with its controls, checked against the images, the model and any unfinished
        chunks in `run_dir`."""
        settings = trained.eval_settings
        explainer = EXPLAINERS.build(trained.plain["explainer"])
        main = attribution_attack(trained.plain[key], explainer, key, settings.protocol)
        height, width = trained.test.images.shape[-2:]
        if main.k is None or main.eval_k is None:
            main = main.sized_for(height, width)
            log.info("%s: k=%d and eval_k=%d of the %d pixels of a saliency map (null: an eighth, at most 100)", key,
                     main.k, main.eval_k, height * width)
        twice = sorted({name for name in settings.baselines if settings.baselines.count(name) > 1})
        if twice:
            raise AttrobustError(f"eval.baselines: {', '.join(twice)} listed twice; list each baseline once")
        main.check_fits(*trained.test.images.shape[-2:], key)
        try:
            main.check_model(trained.model)
        except NotSmoothable as error:  # GroupSort and the like: a direction that needs no second derivative
            main = dataclasses.replace(main, direction="estimated")
            main.check_model(trained.model)
            log.info("%s: the model's activation %s has no smooth counterpart; the attack estimates its direction from "
                     "%d probe pairs per step instead (%s.direction=estimated)", key, error.activation, main.probes,
                     key)
        controls = [baseline(main, name) for name in settings.baselines if name != main.name]  # not itself
        metrics = protocol_metrics(settings.metrics, settings.protocol)
        for metric in metrics:
            try:
                metric.check_fits(*trained.test.images.shape[-2:])
            except ValueError as error:
                raise AttrobustError(f"eval.metrics '{metric.column}': {error}") from error
        for each in (main, *controls):
            if each is not main:
                each.check_model(trained.model)
            measure_store(run_dir, trained, each, metrics, shard).check()  # another evaluation's: refused now
        return cls((main, *controls), tuple(metrics))

    def run(self, trained: TrainedModel, run_dir: Path, shard: Shard = WHOLE) -> pd.DataFrame:
        """Every attack's per-image rows on this shard's chunks (one row per image and attack, named in `attack`);
        `examples.pt` and `figure.png` of the first attack. Finished chunks stay on disk until `discard_chunks`."""
        metrics = list(self.metrics)
        per_image = []
        self.stores = []
        for each in self.attacks:
            store = measure_store(run_dir, trained, each, metrics, shard)
            evaluation = _attack_attributions(trained, each, metrics, store, shard, warn=each is self.attacks[0])
            if each is self.attacks[0]:
                _draw(trained, each, evaluation, store, metrics, run_dir)
            per_image.append(evaluation.per_image.assign(attack=each.name))
            self.stores.append(store)
            self.chunks[each.name] = [evaluation.chunk, evaluation.piece]
        return pd.concat(per_image, ignore_index=True)

    def discard_chunks(self) -> None:
        """Once the run's own files are written, the finished chunks are no longer needed."""
        for store in self.stores:
            store.discard()


def warn_about(results: pd.DataFrame) -> None:
    """A warning line for each way the headline of these rows could mislead (attrobust.reporting.caveats)."""
    for line in headline_caveats(results, tuple(random_baselines())):
        log.warning(line)


def measure_store(run_dir: Path, trained: TrainedModel, attack: AttributionAttack,
                  metrics: list[Metric], shard: Shard = WHOLE) -> MeasureStore:
    """Where the finished chunks of `attack` are kept until the run's files are written; resumed only by the same
    evaluation (checkpoint, images, attack, explainer, metrics, seed)."""
    what = {"checkpoint": [trained.payload.get(key) for key in ("run_id", "config_hash", "epoch")],
            "dataset": trained.dataset_name, "images": trained.test.index.tolist(), "seed": trained.plain["seed"],
            "attack": repr(attack), "metrics": [repr(metric) for metric in metrics],
            "device": next(trained.model.parameters()).device.type, "amp": trained.accel.amp,
            **({} if shard.whole else {"shard": [shard.index, shard.count]})}
    return MeasureStore(run_dir / "measures.parts" / attack.name, config_hash(what))


def baseline(main: AttributionAttack, name: str) -> AttributionAttack:
    """The random baseline `name` with the threat model, budget, selection and explainer of the attack `main`."""
    if name not in random_baselines():
        raise AttrobustError(f"eval.baselines: '{name}' is not a random baseline; choose from: "
                             f"{choices(random_baselines())} (or eval.baselines=[] for none)")
    shared = {f.name: getattr(main, f.name) for f in dataclasses.fields(AttributionAttack)}
    return ATTRIBUTION_ATTACKS.get(name)(**shared)


def attack(cfg: DictConfig, run_dir: Path) -> pd.DataFrame | None:
    """Attack the explanations (`cfg.explainer`) of a checkpoint on its correctly classified test images
    (`cfg.attack`) beside its random controls (`eval.baselines`), scored by `eval.metrics`.

    Writes `measures.csv` (one row per image and attack), result rows and tables, `examples.pt` and `figure.png`; a
    killed run resumes in the same folder; sharded like `evaluate`.
    """
    return run_evaluation(load_trained(cfg), run_dir, "attribution_attack", None)


def explain(cfg: DictConfig, run_dir: Path) -> None:
    """The maps of `cfg.explainer` for the selected test images of a checkpoint (eval.indices, classes, sample,
    num_examples; without any, the first `figure_examples`), of the true class: `maps.pt` (index, label, prediction,
    attributions (N, C or 1, H, W), saliency (N, H, W) normalised to a pixel mean of 1) and `maps.png` (the first
    `figure_examples` images)."""
    trained = load_trained(cfg)
    if trained.eval_settings.shard is not None or trained.eval_settings.num_shards != 1:
        raise AttrobustError("eval.shard / eval.num_shards split `evaluate` and `attack`; `explain` draws its maps "
                             "whole (choose images with eval.indices, eval.sample or eval.num_examples)")
    explainer = EXPLAINERS.build(trained.plain["explainer"])
    explainer.check_model(trained.model)
    test, settings = trained.test, trained.eval_settings
    if all(getattr(settings, key) is None for key in ("indices", "classes", "sample", "num_examples")):
        if trained.settings.figure_examples == 0:
            raise AttrobustError("figure_examples=0 with no images chosen leaves explain nothing to explain; set "
                                 "figure_examples=N, or choose images with eval.indices, eval.classes, eval.sample or "
                                 "eval.num_examples")
        test = test.head(trained.settings.figure_examples)
        log.info("explaining the first %d test images (choose others with eval.indices, eval.classes, eval.sample or "
                 "eval.num_examples)", len(test))
    mark_started(run_dir)
    device = next(trained.model.parameters()).device
    chunk = settings.attribution_batch_size or auto_batch_size(device, explainer.passes_per_image)
    pieces: dict[str, list[Tensor]] = {"attributions": [], "saliency": [], "prediction": []}
    for start in range(0, len(test), chunk):
        x, y = test.batch(slice(start, start + chunk), device)
        with torch.inference_mode():
            pieces["prediction"].append(trained.model(x).argmax(1).cpu())
        attributions = explainer.explain(trained.model, x, y).detach()
        pieces["attributions"].append(attributions.float().cpu())
        pieces["saliency"].append(saliency_map(attributions).view(len(y), *x.shape[-2:]).float().cpu())
    maps = {"index": test.index, "label": test.labels, "explainer": explainer.describe(),
            **{key: torch.cat(value) for key, value in pieces.items()}}
    save_torch_atomic(maps, run_dir / "maps.pt")
    shown = min(trained.settings.figure_examples, len(test))
    for name in ("maps.png", "maps.pdf"):  # an earlier run's figure must not stand beside these maps
        (run_dir / name).unlink(missing_ok=True)
    explanation_figure(test.images[:shown].float() / 255, maps, shown, run_dir / "maps.png",
                       figure_title(trained, f"{explainer.describe()} of the true class"),
                       overlay=explainer.registry_name == "gradcam")
    log.info("wrote the %s maps of %d test images to %s (maps.pt%s)", explainer.describe(), len(test), run_dir,
             ", maps.png" if shown else "; no maps.png with figure_examples=0")


def _draw(trained: TrainedModel, attribution: AttributionAttack, evaluation: AttributionEvaluation,
          store: MeasureStore, metrics: list[Metric], run_dir: Path) -> None:
    """`examples.pt` and `figure.png` of the images `figure_images` chooses."""
    rows = figure_rows(evaluation.per_image, metrics[0], trained.settings.figure_choice,
                       trained.settings.figure_examples)
    examples = figure_examples(trained.model, attribution, trained.test, evaluation.per_image, rows, store, metrics,
                               trained.settings.figure_choice)
    if examples:
        save_torch_atomic(examples, run_dir / "examples.pt")
        what = (f"{attribution.name} attack on {attribution.explainer.describe()}, eps "
                f"{pixel_amount(attribution.eps)}, {attribution.steps} steps")
        attribution_figure(examples, run_dir / "figure.png", figure_title(trained, what))
    else:  # nothing to draw: no figure of an earlier run in this folder may stand beside these results
        for name in ("examples.pt", "figure.png", "figure.pdf"):
            (run_dir / name).unlink(missing_ok=True)


def _attack_attributions(trained: TrainedModel, attribution: AttributionAttack, metrics: list[Metric],
                         store: MeasureStore, shard: Shard = WHOLE, warn: bool = True) -> AttributionEvaluation:
    with trained.accel.autocast(next(trained.model.parameters()).device):  # metrics stay float32
        evaluation = evaluate_attributions(trained.model, trained.test, attribution, metrics,
                                           trained.eval_settings.attribution_batch_size,
                                           trained.eval_settings.batch_size, store, trained.plain["seed"],
                                           shard=shard)
    log_attack_summary(attribution.describe(), evaluation.per_image, evaluation.n_images, metrics, shard, warn)
    return evaluation


def log_attack_summary(attack: str, scored: pd.DataFrame, images: int, metrics: list[Metric],
                       shard: Shard = WHOLE, warn: bool = True) -> None:
    """One line: the strict accounting first (images with a counted iterate: it cannot overstate robustness), then
    the reference's (every scored image), and the counts; never a NaN. No image to score is a warning once (`warn`:
    the first attack of the suite), an info line for its controls."""
    if len(scored) == 0 and not shard.whole:  # `images` counts the whole selection, not this shard's share
        log.info("%s: no correctly classified image of this evaluation falls to %s", attack, shard.describe())
        return
    if images == 0:
        log.info("%s: no image selected", attack)
        return
    if len(scored) == 0:
        (log.warning if warn else log.info)(
            "%s: none of the %d images is classified correctly, so no explanation was attacked (its measures are n/a "
            "in the table)", attack, images)
        return
    qualified = scored[scored["qualified"].astype(bool)]

    def means(frame: pd.DataFrame) -> str:
        return ", ".join(f"{m.title} {m.scale * frame[m.column].mean():.4g}{m.unit}" for m in metrics)

    strict = f"{means(qualified)} over the {len(qualified)} with a counted iterate" if len(qualified) else \
        "no image with a counted iterate (strict measures n/a)"
    log.info("%s on %d of %d images (correctly classified): %s; reference accounting (all %d scored): %s; %d unmoved",
             attack, len(scored), images, strict, len(scored), means(scored),
             int((~scored["moved"].astype(bool)).sum()))


def _accuracy_rows(model: torch.nn.Module, test: ImageSet, attack: PredictionAttack, batch_size: int,
                   identity: RunIdentity, seed: int, accel: Accel = NO_ACCEL) -> pd.DataFrame:
    """Rows for natural accuracy and accuracy under `attack` (seeded: the attack's random starts)."""
    with accel.autocast(next(model.parameters()).device):
        counts = evaluate_accuracy(accel.first_order(model), test, attack, batch_size, seed)
    _log_accuracy(counts, attack)
    return accuracy_rows(identity, counts.n, counts.natural_accuracy_pct, counts.adversarial_accuracy_pct)


def _accuracy(trained: TrainedModel, attack: PredictionAttack, shard: Shard, margins: bool = False) -> pd.DataFrame:
    """This shard's per-image rows of natural accuracy and accuracy under `attack` (engine/evaluate.py); with
    `margins`, each image's logit margin (for certificates)."""
    model = trained.model
    with trained.accel.autocast(next(model.parameters()).device):
        per_image = accuracy_per_image(trained.accel.first_order(model), trained.test, attack,
                                       trained.eval_settings.batch_size, trained.plain["seed"], shard,
                                       margins=margins)
    _log_accuracy(accuracy_counts(per_image), attack)
    return per_image


def _certificate(trained: TrainedModel) -> dict[str, float] | None:
    """What certified accuracy needs for a Lipschitz model (`lipschitz_constant`: L2, set by `build_model`); None for
    other models."""
    constant = trained.model.__dict__.get("lipschitz_constant")
    if constant is None:
        return None
    return {"lipschitz": float(constant), "l2": float(trained.eval_settings.certify_l2),
            "linf": float(trained.plain["dataset"]["eps"]), "dimension": float(trained.test.images[0].numel())}


def _log_accuracy(counts: AccuracyCounts, attack: PredictionAttack) -> None:
    if counts.n == 0:
        log.info("no batch of eval.batch_size images for accuracy falls to this shard")
        return
    log.info("natural accuracy %.2f%%, accuracy under %s %.2f%% (n=%d)", counts.natural_accuracy_pct,
             attack.describe(), counts.adversarial_accuracy_pct, counts.n)


def attribution_attack(cfg: Mapping[str, Any], explainer: Any, key: str,
                       protocol: str = "reference") -> AttributionAttack:
    """An attack on the explanations of `explainer` (configured at `key`); prediction attacks are refused with the
    command that runs them. `eval.protocol=robust` starts it from a random point of the eps-ball."""
    name = str(cfg.get("name"))
    if name in PREDICTION_ATTACKS.names():
        raise AttrobustError(f"{key}={name} attacks predictions, not explanations; choose one of: "
                             f"{choices(ATTRIBUTION_ATTACKS.names())} (accuracy under attack: attrobust evaluate)")
    attack = ATTRIBUTION_ATTACKS.build(cfg, key, explainer=explainer)
    if protocol == "robust" and not attack.random_start:
        log.info("eval.protocol=robust: %s starts from a random point of the eps-ball", key)
        attack = dataclasses.replace(attack, random_start=True)
    return attack


def prediction_attack(cfg: Mapping[str, Any]) -> PredictionAttack:
    """The attack of accuracy under attack; attacks on explanations are refused with the command that runs them."""
    name = str(cfg.get("name"))
    if name in ATTRIBUTION_ATTACKS.names():
        raise AttrobustError(f"attack={name} attacks explanations, not predictions; accuracy under attack needs "
                             f"attack={' or '.join(PREDICTION_ATTACKS.names())} (run attacks on explanations with: "
                             f"attrobust attack attack={name})")
    return PREDICTION_ATTACKS.build(cfg)


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


def evaluation_checks(plain: Mapping[str, Any]) -> list[Callable[[], object]]:
    """The independent parts of an evaluate / attack / explain config, each built once to find every bad setting."""
    checks: list[Callable[[], object]] = [lambda: command_settings(plain),
                                          lambda: _settings(EvalSettings, plain["eval"], "eval"),
                                          lambda: _settings(Accel, plain.get("accel", {}), "accel")]
    if "explainer" in plain:
        checks.append(lambda: EXPLAINERS.build(plain["explainer"]))
    if "attribution_attack" in plain and plain.get("attributions", True):
        checks.append(lambda: attribution_attack(plain["attribution_attack"], EXPLAINERS.build({"name": "gradient"}),
                                                 "attribution_attack"))
    if "attack" in plain and "attributions" in plain:  # evaluate: its prediction attack
        checks.append(lambda: prediction_attack(plain["attack"]))
    return checks


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


def _settings(cls: type[S], values: Mapping[str, Any], key: str) -> S:
    """A settings dataclass from the `key:` block of the config, checked like a registered component."""
    return construct(cls, values, f"'{key}' settings", key)
