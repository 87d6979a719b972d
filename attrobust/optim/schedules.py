"""Learning-rate schedules as pure functions of (epoch, epochs, optimizer step): nothing to save, resume-safe."""

from __future__ import annotations

import math
from collections.abc import Sequence

SCHEDULES = ("constant", "cosine", "piecewise")
Milestones = tuple[tuple[float, float], ...]  # (boundary step, learning rate of the steps after it)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate during `epoch` (0-based) of `epochs`.

    cosine: 0.5 * (1 + cos(pi * epoch / epochs)), as torch's CosineAnnealingLR stepped once per epoch to zero.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{schedule}'")


def learning_rate(lr: float, schedule: str, epoch: int, epochs: int, step: int, milestones: Milestones) -> float:
    """The rate of optimizer step `step` (0-based, counted over the whole run) in `epoch`.

    piecewise: the reference code's `step_size_schedule` (e.g. [[0, 1e-3], [500, 1e-2], [60000, 1e-3]]) as it feeds
    TensorFlow's `piecewise_constant(global_step, boundaries=[500, 60000], values)`, which keeps the old rate AT a
    boundary: steps 0..500 use 1e-3, 501..60000 use 1e-2, 60001.. use 1e-3 (the reference's step `ii` runs with
    `global_step == ii`); `lr` is not used then.
    """
    if schedule == "piecewise":
        return next((rate for start, rate in reversed(milestones[1:]) if step > start), milestones[0][1])
    return lr * lr_factor(schedule, epoch, epochs)


def check_rates(lr: float, weight_decay: float) -> None:
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be positive and finite, got {lr}")
    if not 0 <= weight_decay < math.inf:
        raise ValueError(f"weight_decay must be >= 0 and finite, got {weight_decay}")


def check_schedule(schedule: str, milestones: Sequence[Sequence[float]] = ()) -> None:
    if schedule == "piecewise":
        starts = [start for start, _ in milestones]
        rates_ok = all(0 < rate < math.inf for _, rate in milestones)
        if not milestones or starts[0] != 0 or starts != sorted(set(starts)) or not rates_ok:
            raise ValueError(f"schedule 'piecewise' needs milestones [[0, lr], [step, lr], ...] with increasing steps "
                             f"and positive finite rates, got {[list(m) for m in milestones]}")
        return
    if milestones:
        raise ValueError(f"milestones are only used by schedule 'piecewise', not '{schedule}'")
    lr_factor(schedule, 0, 1)
