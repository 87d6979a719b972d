"""How a training step or epoch stops early: a loss or gradient that is not finite (caught before anything of the step
is kept), a requested stop (SIGTERM, SIGUSR1: the position is saved first), the device out of memory; each becomes
one line naming what to change (attrobust/engine/train.py runs the epochs)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from attrobust.engine.resume import EpochProgress, kept
from attrobust.errors import AttrobustError
from attrobust.regularizers.base import LossOutput


class NonFiniteStep(Exception):
    """A step whose loss or gradient is not finite; nothing of it was applied."""

    def __init__(self, epoch: int, batch: int, step: int, lr: float, what: list[str]) -> None:
        super().__init__(", ".join(what))
        self.epoch, self.batch, self.step, self.lr, self.what = epoch, batch, step, lr, what


class StopRequested(Exception):
    def __init__(self, signum: int, progress: EpochProgress) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.progress = signum, progress


@contextmanager
def epoch_failures(epoch: int, batch_size: int, state_path: Path,
                   save: Callable[[int, EpochProgress | None], None]) -> Iterator[None]:
    """Each way an epoch stops early as one line; a requested stop (SIGTERM, SIGUSR1) saves its position first."""
    try:
        yield
    except StopRequested as request:
        save(epoch, request.progress)
        raise AttrobustError(f"stopped by {request} in epoch {epoch + 1} after batch {request.progress.batch}; "
                             f"{state_path} is saved: run the same command again to resume") from None
    except NonFiniteStep as bad:
        raise AttrobustError(
            f"training diverged: non-finite {bad} in epoch {bad.epoch + 1} at batch {bad.batch + 1} (step "
            f"{bad.step + 1}, learning rate {bad.lr:g}); the step was not applied, {kept(state_path)}; try a "
            f"smaller optim.lr or reg.weight") from None
    except torch.cuda.OutOfMemoryError:
        raise AttrobustError(
            f"out of device memory in epoch {epoch + 1} at train.batch_size={batch_size}; run again with "
            f"reg.max_points=<rows per IG pass> reg.recompute=true (IG objectives; resumes from the last saved step) "
            f"or a smaller train.batch_size (a new run)") from None


def finite_step(out: LossOutput | None, model: nn.Module) -> Tensor:
    """Whether a step's loss and every parameter's gradient are finite (a bool scalar on the model's device)."""
    flags = [torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None]
    if out is not None:
        flags.append(torch.isfinite(out.loss.detach()).all())
    return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool)


def non_finite_parts(out: LossOutput | None, model: nn.Module) -> list[str]:
    """What was not finite in a failed step: the loss terms by name, else the loss, else the gradient."""
    if out is not None:
        terms = [f"'{key}'" for key, value in out.terms.items() if not torch.isfinite(value).all()]
        if terms:
            return [f"loss term {', '.join(terms)}"]
        if not torch.isfinite(out.loss).all():
            return ["loss"]
    names = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return [f"gradient of {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")] if names else \
        ["gradient on another process"]
