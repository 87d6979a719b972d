"""`attrobust evaluate`: the paper's columns for a trained model, and every other evaluation part the config asks
for; `run_evaluation` is what `evaluate` and `attack` share: a loop over the configured parts (attrobust/parts)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from attrobust.attacks import random_baselines
from attrobust.engine import cost, distributed
from attrobust.engine.evaluate import EvalSettings
from attrobust.engine.protocol import protocol_named
from attrobust.engine.sharding import Shard
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.parts import EvaluationPart, Measured, Request, configured_parts
from attrobust.provenance import PROVENANCE_FILE, config_hash, git_commit
from attrobust.reporting.caveats import headline_caveats
from attrobust.reporting.entry import (ENTRY_FILE, FINGERPRINT_DEFINITION, SHARD_ENTRY_FILE, entry, images_fingerprint,
                                       protocol_fingerprint, write_entry, write_shard_description)
from attrobust.reporting.evaluation import EVALUATION_FILE, EvaluationRecord, write_evaluation
from attrobust.reporting.merge import merge_shards
from attrobust.reporting.settings import Flat, evaluation_setting, setting_digest
from attrobust.rundir import Job
from attrobust.tasks.restore import TrainedModel, load_trained
from attrobust.trained import DATA_LOCATION_KEYS

log = logging.getLogger("attrobust")

SHARD_KEYS = ("shard", "num_shards")  # eval keys that split one evaluation, not change it
# top-level keys that say where or how an evaluation runs, not what it measures (left out of its fingerprint)
RUN_PLACE_KEYS = ("checkpoint", "device", "paths", "dataset_path", "figure_examples", "figure_images")
# how long a torchrun evaluation's ranks wait for the slowest one's shard before merging
EVALUATION_TIMEOUT = timedelta(days=2)


def evaluate(cfg: DictConfig, job: Job) -> pd.DataFrame | None:
    """The paper's columns for a checkpoint: NA, AA under `cfg.attack`, every metric of `eval.metrics` under
    `cfg.attribution_attack` of `cfg.explainer` and under each random baseline of `eval.baselines` (skipped with
    `attributions=false`), and the explainer's stability, faithfulness and randomisation check when `eval.*` lists
    them. One line of the table per attribution attack, NA and AA on each. Writes each part's per-image rows, the
    result rows and tables, and `figure.png` of the attribution attack; a killed run resumes its attacks. A shard
    (`eval.shard`, or each process under torchrun) writes only its per-image rows (reporting/evaluation.py)."""
    trained = load_trained(cfg)
    request = Request(trained.config.attack, "attribution_attack" if trained.settings.attributions else None)
    return run_evaluation(trained, job, request)


def run_evaluation(trained: TrainedModel, job: Job, request: Request) -> pd.DataFrame | None:
    """This shard's per-image rows of each configured part, written with `evaluation.json`; the result rows and
    tables of a whole run (or, under torchrun, of the merged shards, on rank 0)."""
    shard, here = evaluation_shard(trained.eval_settings, trained.device)
    run_dir = distributed.shared_run_dir(job.run_dir)
    work_dir = run_dir if here.size == 1 else run_dir / "shards" / str(here.rank)
    parts = configured_parts(trained, request)
    for part in parts:
        part.prepare(trained, work_dir, shard)
    announce_cost(trained, parts, shard, request.attack_key)
    job.mark_started()
    work_dir.mkdir(parents=True, exist_ok=True)
    for name in (EVALUATION_FILE, ENTRY_FILE, SHARD_ENTRY_FILE):  # an earlier run's: this folder's rows are replaced
        (work_dir / name).unlink(missing_ok=True)
    if not shard.whole:
        log.info("evaluating %s of the work (engine/sharding.py)", shard.describe())
    evaluation = evaluation_setting(trained.plain, trained.setting, [key for p in parts for key in p.eval_keys],
                                    {name: key for p in parts for name, key in p.groups().items()})
    measured = {part.registry_name: part.run(trained, work_dir, shard) for part in parts}
    added = {key: value for each in measured.values() for key, value in each.record.items()}  # chunks, certificate
    record = EvaluationRecord(evaluation_fingerprint(trained), None if shard.whole else shard.index, shard.count,
                              trained.test.index.tolist(), dict(trained.config.eval_cfg),
                              parts=part_lines(trained, parts, measured, evaluation), command=_command(run_dir),
                              device=trained.device.type, settings={"setting": trained.setting,
                                                                    "evaluation": evaluation}, **added)
    if not shard.whole:  # before the record that marks the shard finished: a merge finds both
        write_shard_description(work_dir, *entry_description(trained, record))
    table = write_evaluation(work_dir, record, {name: each.frame for name, each in measured.items()})
    for part in parts:
        part.finish()
    if here.size > 1:
        distributed.finish()  # every shard is written
        if not here.is_main:
            return None
        table = merge_shards([run_dir / "shards" / str(rank) for rank in range(here.size)], run_dir)
    if table is None:
        log.info("wrote %s; when every shard is done, merge them: attrobust merge <the folder above the shards' "
                 "folders> (or attrobust report)", shard.describe())
        return None
    warn_about(pd.read_csv(run_dir / "results.csv"))
    write_entry(run_dir, evaluation_entry(trained, run_dir))
    return table


def evaluation_entry(trained: TrainedModel, run_dir: Path) -> dict[str, Any]:
    """The leaderboard entry of the evaluation written in `run_dir` (reporting/entry.py): its headline measures, as
    the tables head them (the strict accounting: the images with a counted iterate)."""
    record = EvaluationRecord.read(run_dir / EVALUATION_FILE)
    described, headings = entry_description(trained, record)
    described["gallery"] = "figure.png" if (run_dir / "figure.png").is_file() else None
    return entry(pd.read_csv(run_dir / "results.csv"), record.parts, described, headings)


def entry_description(trained: TrainedModel,
                      record: EvaluationRecord) -> tuple[dict[str, Any], dict[str, tuple[str, bool]]]:
    """What an entry says of the model and protocol of the evaluation `record`, and its measures' headings."""
    images, as_run = record.images, [identity["attack"] for _, identity in record.parts.get("attacks", [])]
    settings = trained.eval_settings
    headings = {m.column + "_strict": (m.title, m.higher_is_better)
                for m in protocol_named(settings.protocol).metrics(settings.metrics)}
    payload, threat = trained.payload, trained.config.threat
    seconds = sum(float(row.get("seconds", 0.0)) for row in payload.get("history") or []) or None
    described = {"run_id": payload.get("run_id"), "method": trained.setting.get("experiment") or
                 payload["reg_cfg"]["name"], "reg": payload["reg_cfg"]["name"],
                 "architecture": payload["model_cfg"]["name"], "dataset": trained.dataset_name,
                 "seed": payload.get("seed"), "evaluation_seed": trained.seed,
                 "eps": threat.eps if threat is not None else None,
                 "explainer": EXPLAINERS.build(trained.config.explainer_cfg).describe(),
                 "protocol": settings.protocol, "fingerprint": protocol_fingerprint(images, trained.plain, as_run),
                 "fingerprint_definition": FINGERPRINT_DEFINITION,
                 "images_fingerprint": images_fingerprint(images, trained.plain),
                 "images": len(images), "confidence": settings.confidence, "training_seconds": seconds,
                 "commit": git_commit(), "config_hash": payload.get("config_hash"),
                 "setting_hash": setting_digest(trained.setting)}
    return described, headings


def part_lines(trained: TrainedModel, parts: list[EvaluationPart], measured: dict[str, Measured],
               evaluation: Flat) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Each part's lines with the identity of their rows; the parts that explain with the configured explainer share
    one line, '<stability and faithfulness> of <explainer>'."""
    explaining = [part for part in parts if part.explains]
    shared = None
    if explaining:
        names = [part.registry_name for part in explaining]
        joined = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        shared = asdict(trained.identity(f"{joined} of {explaining[0].explainer.describe()}", evaluation))
    return {part.registry_name: [(part.registry_name, shared)] if part.explains else
            [(line, asdict(trained.identity(what, evaluation))) for line, what in measured[part.registry_name].lines]
            for part in parts}


def announce_cost(trained: TrainedModel, parts: list[EvaluationPart], shard: Shard, attack_key: str | None) -> None:
    """The estimate line (engine/cost.py) for this shard's share of the selected images; a courtesy, never a
    failure."""
    try:
        images = len(trained.test) / shard.count
        x, y = trained.test.head(cost.CALIBRATION_IMAGES).batch(slice(0, cost.CALIBRATION_IMAGES), trained.device)
        explainer = next((part.explainer for part in parts if part.explainer is not None), None)
        with trained.accel.autocast(x.device):
            times = cost.calibrate(trained.model, x, y, explainer)
        estimates = [each for part in parts for each in part.costs(trained, times, images)]
        cost.announce(estimates, trained.device, cheaper_evaluation(attack_key))
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
        log.info("no cost estimate (its calibration failed: %s)", type(error).__name__)


def cheaper_evaluation(attack_key: str | None) -> str:
    """What makes an evaluation cheaper on a CPU (the estimate scales with each of these)."""
    key = attack_key or "attribution_attack"
    return (f"fewer images (eval.num_examples=100), one run of the attack ({key}.restarts=1), fewer steps "
            f"({key}.steps=20), one control (eval.baselines=[random_noise]), or fewer IG points (explainer.steps=20)")


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


def warn_about(results: pd.DataFrame) -> None:
    """A warning line for each way the headline of these rows could mislead (attrobust.reporting.caveats)."""
    for line in headline_caveats(results, tuple(random_baselines())):
        log.warning(line)
