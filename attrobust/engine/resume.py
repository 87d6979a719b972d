"""Resuming a training run: what `last.pt` holds (the position inside an interrupted epoch, the RNG state) and how a
run continues from it, or from a finished run's `model.pt`, only when it is the same run (`resume_key`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attrobust.engine import distributed
from attrobust.engine.checkpoint import load_checkpoint, save_checkpoint
from attrobust.errors import AttrobustError

log = logging.getLogger("attrobust")


@dataclass
class EpochProgress:
    """Where an interrupted epoch stopped: the next batch, the examples seen and the running sums of its log row."""

    batch: int = 0
    seen: int = 0
    sums: dict[str, Tensor] = field(default_factory=dict)

    def on_cpu(self) -> EpochProgress:
        """This position with its sums copied to the host (what a checkpoint stores)."""
        return EpochProgress(self.batch, self.seen, {key: value.cpu() for key, value in self.sums.items()})


def kept(state_path: Path) -> str:
    """What a diverged run leaves: its last saved state, if one was saved before the bad step."""
    if state_path.exists():
        return f"{state_path} keeps the last saved state and no model.pt is written"
    return "no state was saved before it (nothing to resume) and no model.pt is written"


def save_training_state(state_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        metadata: Mapping[str, Any], history: list[dict[str, float]], epoch: int,
                        progress: EpochProgress | None) -> None:
    """`last.pt` after `epoch` epochs (and, when `progress` is given, inside the next one): `metadata`, the history so
    far, weights, optimizer and RNG; refused, naming the parameter, when a weight is no longer finite."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # by the last step's update (a next step's check would have caught it)
        when = f"in epoch {epoch + 1} after batch {progress.batch}" if progress else f"by the end of epoch {epoch}"
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise AttrobustError(f"training diverged: the weights became non-finite ({bad[0]}{more}) {when}; "
                             f"{kept(state_path)}; try a smaller optim.lr or reg.weight")
    if not distributed.world().is_main:
        return
    position = {} if progress is None else {"partial": {"batch": progress.batch, "seen": progress.seen,
                                                        "sums": progress.sums}}
    save_checkpoint({**metadata, "epoch": epoch, **position, "history": history, "model_state": model.state_dict(),
                     "optimizer_state": optimizer.state_dict(), "rng": rng_state()}, state_path, "train_state")


def resume_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 metadata: Mapping[str, Any]) -> tuple[int, list[dict[str, float]], EpochProgress | None]:
    state = load_checkpoint(path)
    if state.get("kind") != "train_state":
        raise AttrobustError(f"{path} is not a training state checkpoint")
    missing = [key for key in ("epoch", "history", "model_state", "optimizer_state", "rng") if key not in state]
    if missing:
        raise AttrobustError(f"{path} is an incomplete training state (no {', '.join(missing)}); delete it or pass "
                             f"train.resume=false to start over")
    if state.get("resume_key") != metadata.get("resume_key"):
        raise AttrobustError(f"{path} was written with a different dataset/model/reg/optim/seed; use a new run dir "
                             f"or train.resume=false to start over")
    old, new = state.get("schedule_epochs"), metadata.get("schedule_epochs")
    if old is not None and new is not None and old != new:  # a schedule over the run's length (cosine) would change
        raise AttrobustError(f"{path} was trained with a learning-rate schedule over {old} epochs; {new} epochs would "
                             f"change the rate of the epochs already run, so the result would not be a {new}-epoch "
                             f"run: use a new run dir, train.resume=false, or the run's own length ({old} epochs)")
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    set_rng_state(state["rng"])
    partial = state.get("partial")
    if partial is None:
        log.info("resuming from %s after epoch %d", path, state["epoch"])
        return int(state["epoch"]), list(state["history"]), None
    log.info("resuming from %s in epoch %d at batch %d", path, state["epoch"] + 1, partial["batch"])
    return int(state["epoch"]), list(state["history"]), EpochProgress(**partial)


def finished_history(path: Path, model: nn.Module, metadata: Mapping[str, Any], epochs: int) -> list[dict[str, float]]:
    """The history of the finished run whose `model.pt` is at `path` (its weights loaded into `model`): a second
    start of the same run does not train again. Its training state is gone (train.keep_last=false), so a longer
    run cannot continue from it."""
    state = load_checkpoint(path)
    if state.get("resume_key") != metadata.get("resume_key"):
        raise AttrobustError(f"{path} was written with a different dataset/model/reg/optim/seed; use a new run dir "
                             f"or train.resume=false to start over")
    history = list(state.get("history", []))
    if len(history) != epochs:
        raise AttrobustError(f"{path} finished after {len(history)} epoch(s) and its training state (last.pt) was not "
                             f"kept, so it cannot go on to {epochs}; use a new run dir or train.resume=false (to "
                             f"extend runs later, train them with train.keep_last=true)")
    model.load_state_dict(state["model_state"])
    log.info("%s is finished (%d epochs): nothing to train; evaluating it again", path, epochs)
    return history


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
