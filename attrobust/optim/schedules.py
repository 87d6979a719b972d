"""Per-epoch learning-rate schedules as pure functions of (epoch, epochs): nothing to save, resume-safe."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate during `epoch` (0-based) of `epochs`.

    cosine: 0.5 * (1 + cos(pi * epoch / epochs)), as torch's CosineAnnealingLR stepped once per epoch to zero.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{schedule}'")


def check_schedule(schedule: str) -> None:
    lr_factor(schedule, 0, 1)
