"""The training loop: one loop for every regulariser (see `attrobust.regularizers.base`).

Each epoch shuffles with a generator seeded by (seed, epoch), steps the optimizer on `objective(model, x, y).loss`,
then atomically rewrites `last.pt` (weights, optimizer, RNG state, history) and `train_log.csv`. On SIGTERM or
SIGUSR1 (a cluster preempting the job or warning of its time limit) the loop finishes the current batch, writes
`last.pt` with the position inside the epoch and the epoch's running sums, and stops; `checkpoint_every` writes the
same every N optimizer steps. Re-running in the same run dir resumes from `last.pt` (after the last finished epoch or
batch) and ends with the same weights and log as an uninterrupted run.

Length (`StepPlan`): `epochs` counts passes over the data, each ending with a partial batch when the batch size does
not divide the data; `steps` counts optimizer steps as the RAR reference does (`max_num_training_steps`), each on a
full batch: every epoch is a fresh permutation cut into floor(N / batch_size) batches, the remainder left out (the
reference's GTSRB and Flower `get_next_batch(multiple_passes=True)` also drop it; for MNIST there is none), and the
last epoch stops after the step count. When batch_size divides N, `steps = epochs * N / batch_size` trains the same.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.atomic import write_text_atomic
from attrobust.data.base import ImageSet
from attrobust.engine import cost, distributed
from attrobust.engine.accel import NO_ACCEL, Accel
from attrobust.engine.checkpoint import MODEL_FILE, TRAIN_STATE_FILE
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.resume import EpochProgress, finished_history, resume_state, save_training_state
from attrobust.engine.step_failures import (NonFiniteStep, StopRequested, epoch_failures, finite_step,
                                            non_finite_parts)
from attrobust.engine.stopping import StopFlag, catch_stop_signals
from attrobust.errors import AttrobustError
from attrobust.regularizers.base import LossOutput, Objective

log = logging.getLogger("attrobust")
TRAIN_LOG_FILE = "train_log.csv"


@dataclass(frozen=True)
class StepPlan:
    """The length of a run: `steps_per_epoch` optimizer steps in every epoch but perhaps the last, `total` in all."""

    steps_per_epoch: int
    total: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total / self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.total - epoch * self.steps_per_epoch)


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int
    epochs: int | None = None
    steps: int | None = None
    num_examples: int | None = None
    resume: bool = True
    keep_last: bool = False        # keep last.pt (optimizer and RNG state) after the run finishes: it can be extended
    checkpoint_every: int | None = None
    log_every_s: float = 30.0
    test_every: int | None = None  # natural test accuracy (`test_acc`) in the log every N epochs; None: never

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            both = "both" if self.epochs is not None else "neither"
            raise ValueError(f"count the run in train.epochs or in train.steps, not {both} (got epochs={self.epochs}, "
                             f"steps={self.steps}); set the other to null, e.g. train.epochs=null train.steps=N")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (0 would report an untrained model), got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 (0 would report an untrained model), got {self.steps}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.num_examples is not None and self.num_examples <= 0:
            raise ValueError(f"num_examples must be positive or null, got {self.num_examples}")
        if self.test_every is not None and self.test_every <= 0:
            raise ValueError(f"test_every must be a positive number of epochs or null, got {self.test_every}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be a positive number of steps or null, "
                             f"got {self.checkpoint_every}")

    def checkpoint_due(self, steps_done: int) -> bool:
        """Whether `last.pt` is written inside an epoch after `steps_done` optimizer steps (`checkpoint_every`)."""
        return self.checkpoint_every is not None and steps_done % self.checkpoint_every == 0

    def plan(self, examples: int) -> StepPlan:
        """The run's length on `examples` training images (full batches only when counted in steps)."""
        if self.steps is None:
            per_epoch = max(math.ceil(examples / self.batch_size), 1)
            return StepPlan(per_epoch, int(self.epochs or 0) * per_epoch)
        if examples < self.batch_size:
            raise AttrobustError(f"train.batch_size={self.batch_size} is larger than the {examples} training images: "
                                 f"train.steps draws full batches; use a smaller train.batch_size")
        return StepPlan(examples // self.batch_size, self.steps)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch: independent of how many epochs ran in this process."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def training_cost(step_s: float, steps: int, device: torch.device) -> str:
    """'estimated cost on cpu: 800 steps of about 24.5 s (measured on the run's second step): about 5.4 h' (+ the
    cheaper way when that is long on a CPU, as `engine.cost` says it for evaluations)."""
    total = step_s * steps
    line = (f"estimated cost on {device.type}: {steps} steps of about {step_s:.3g} s (measured on the run's second "
            f"step): about {cost.duration(total)}")
    if device.type == "cpu" and total > cost.LONG_ON_CPU_S:
        line += ("; long for a CPU: the mnist_mini presets are sized for one (+experiment=mnist_mini_<method>, "
                 "attrobust list), or train fewer images (train.num_examples) or epochs, or fewer IG points "
                 "(reg.ig_steps)")
    return line


def fit(model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, lr_at: Callable[[int, int], float],
        data: ImageSet, settings: TrainSettings, seed: int, run_dir: Path,
        metadata: Mapping[str, Any], accel: Accel = NO_ACCEL, on_start: Callable[[], None] | None = None,
        test_accuracy: Callable[[], float] | None = None,
        on_epoch: Callable[[Mapping[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train for `settings.epochs` epochs or `settings.steps` steps (resuming from `run_dir/last.pt`); returns one log
    row per epoch.

    `lr_at(epoch, step)`: the learning rate of optimizer step `step` (counted from the start of the run). `metadata`
    (plain types: model/dataset configs, run id, resume key) is stored in every checkpoint. `on_start`: called once the
    run can start or resume, before its first step. `test_accuracy()` (a fraction, no random numbers drawn) is logged
    as `test_acc` every `settings.test_every` epochs. `on_epoch(row)`: each epoch's saved log row (the trackers')."""
    history: list[dict[str, float]] = []
    start_epoch, partial = 0, None
    state_path = run_dir / TRAIN_STATE_FILE
    if settings.resume and state_path.exists():
        start_epoch, history, partial = resume_state(state_path, model, optimizer, metadata)
    elif state_path.exists():
        log.info("train.resume=false: starting over (overwriting %s)", state_path)

    def save(epoch: int, progress: EpochProgress | None) -> None:
        save_training_state(state_path, model, optimizer, metadata, history, epoch, progress)

    net = model if objective.second_order else accel.first_order(model)
    plan = settings.plan(len(data.head(settings.num_examples)))
    check_resumable(history if partial is None else [], start_epoch, plan, state_path)
    finished = run_dir / MODEL_FILE
    if settings.resume and not state_path.exists() and finished.exists():  # done, its training state not kept
        history = finished_history(finished, model, metadata, plan.epochs)
        started(on_start, on_epoch, history)
        return history
    started(on_start, on_epoch, history)
    steps_left = plan.total - (start_epoch * plan.steps_per_epoch + (partial.batch if partial else 0))
    timed: list[float] = []

    def on_step(seconds: float) -> None:  # the run's second step (the first pays one-time costs): its cost, once
        timed.append(seconds)
        if len(timed) == 2:
            log.info("%s", training_cost(seconds, steps_left, next(model.parameters()).device))

    with catch_stop_signals() as stop:
        for epoch in range(start_epoch, plan.epochs):
            with epoch_failures(epoch, settings.batch_size, state_path, save):
                row = train_one_epoch(model, objective.for_epoch(epoch), optimizer, data, settings, seed, epoch,
                                      lambda step, epoch=epoch: lr_at(epoch, step), partial, stop, accel, net, plan,
                                      lambda progress, epoch=epoch: save(epoch, progress), on_step)
            partial = None
            if test_accuracy is not None and settings.test_every and (epoch + 1) % settings.test_every == 0:
                row["test_acc"] = test_accuracy()
            history.append(row)
            log.info("epoch %d/%d: %s", epoch + 1, plan.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            save(epoch + 1, None)
            if distributed.world().is_main:
                write_text_atomic(run_dir / TRAIN_LOG_FILE, pd.DataFrame(history).to_csv(index=False))
                if on_epoch is not None:
                    on_epoch(row)
    return history


def started(on_start: Callable[[], None] | None, on_epoch: Callable[[Mapping[str, float]], None] | None,
            history: list[dict[str, float]]) -> None:
    """The run starts or resumes: `on_start()`, then the epochs an earlier run trained, each to `on_epoch` (a
    resumed run's trackers get its whole history, steps 1 ..)."""
    if on_start is not None:
        on_start()
    if on_epoch is not None and distributed.world().is_main:
        for row in history:
            on_epoch(row)


def check_resumable(history: list[dict[str, float]], start_epoch: int, plan: StepPlan, state_path: Path) -> None:
    """Refuse to go on from a run counted in steps that ended inside an epoch (`history`: of a state saved at an
    epoch's end): it could not end like an uninterrupted run."""
    if not history:
        return
    done = int(history[-1].get("step", start_epoch * plan.steps_per_epoch))
    if done != start_epoch * plan.steps_per_epoch and plan.total > done:
        raise AttrobustError(f"{state_path} ended after step {done}, inside epoch {start_epoch}: a run counted in "
                             f"steps cannot go on past a cut epoch and still equal an uninterrupted run; use a new run "
                             f"dir or train.resume=false")


def train_one_epoch(model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, data: ImageSet,
                    settings: TrainSettings, seed: int, epoch: int, lr_of_step: Callable[[int], float],
                    resume_at: EpochProgress | None = None, stop: StopFlag | None = None, accel: Accel = NO_ACCEL,
                    net: nn.Module | None = None, plan: StepPlan | None = None,
                    checkpoint: Callable[[EpochProgress], None] | None = None,
                    on_step: Callable[[float], None] | None = None) -> dict[str, float]:
    """The batches of one epoch of `plan` over the (shuffled) data, from `resume_at` when resuming inside the epoch;
    raises StopRequested after the batch during which `stop` was set. `net` is what the objective calls (default
    `model`; a compiled copy for first-order objectives). `checkpoint(progress)` is called every
    `settings.checkpoint_every` optimizer steps inside the epoch; `on_step(seconds)` after every step."""
    net = model if net is None else net
    device = next(model.parameters()).device
    examples = data.head(settings.num_examples)
    plan = plan or settings.plan(len(examples))
    order = torch.randperm(len(examples), generator=epoch_generator(seed, epoch))
    batches = plan.steps_in(epoch)
    first_step = epoch * plan.steps_per_epoch
    resume_at = resume_at or EpochProgress()
    sums = {key: value.to(device) for key, value in resume_at.sums.items()}
    seen = resume_at.seen
    model.train()

    def status() -> str:
        return " ".join(f"{k}={float(v) / max(seen, 1):.3f}" for k, v in sums.items())

    with ProgressReporter(f"epoch {epoch + 1}/{plan.epochs}", batches, settings.log_every_s) as progress:
        progress.advance(resume_at.batch)
        for batch in range(resume_at.batch, batches):
            step_started = time.perf_counter()
            start = batch * settings.batch_size
            for group in optimizer.param_groups:
                group["lr"] = lr_of_step(first_step + batch)
            out, y, mine = gradients(model, net, objective, optimizer, examples, order[start:start +
                                                                                      settings.batch_size], accel)
            if not distributed.all_ranks(finite_step(out, model)):  # before anything of the step is kept
                raise NonFiniteStep(epoch, batch, first_step + batch, lr_of_step(first_step + batch),
                                    non_finite_parts(out, model))
            if out is not None:
                values = {"acc": (out.logits.detach().argmax(dim=1) == y).float().mean(), **out.terms}
                for key, value in values.items():
                    sums[key] = sums.get(key, torch.zeros((), device=device)) + value.to(device) * mine
                seen += mine
            optimizer.step()
            if on_step is not None:
                on_step(time.perf_counter() - step_started)
            progress.advance(1, status)
            if batch + 1 == batches:  # the epoch's end is saved by the caller
                continue
            if stop is not None and stop.signum is not None:
                raise StopRequested(stop.signum, EpochProgress(batch + 1, seen, sums).on_cpu())
            if checkpoint is not None and settings.checkpoint_due(first_step + batch + 1):
                checkpoint(EpochProgress(batch + 1, seen, sums).on_cpu())
    sums, seen = distributed.sum_over_ranks(sums, seen)
    row = {"epoch": float(epoch + 1)}
    row.update({key: float(value) / seen for key, value in sums.items()})
    row["lr"] = lr_of_step(first_step)
    row["step"] = float(first_step + batches)
    row["seconds"] = progress.elapsed_s
    return row


def gradients(model: nn.Module, net: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer,
              examples: ImageSet, index: Tensor, accel: Accel) -> tuple[LossOutput | None, Tensor | None, int]:
    """The gradient of one step's loss on the batch `index` (this process's share of it, combined over processes):
    the share's output (None when it is empty), its labels, and its size."""
    device = next(model.parameters()).device
    local = distributed.shard(index)  # the whole batch in a single process
    optimizer.zero_grad(set_to_none=True)
    out, y = None, None
    if len(local):
        x, y = examples.batch(local, device)
        with accel.autocast(device):
            out = objective(net, x, y)
        out.loss.backward()
    distributed.combine_gradients(model, len(local), len(index), objective.reduction)
    return out, y, len(local)
