"""Cost before compute: what an evaluation will take on this machine, said in one line before the work starts.

An evaluation's parts are counted in passes of its own kinds, each timed once on this device on a few real test
images (a short calibration before any part runs: 0.4 s for small_cnn and IG-100 on a 2-core CPU):
- a first-order pass: the model's forward and input gradient of one image (a PGD step, a faithfulness curve point
  counts a third: forward only);
- an explainer pass: the explainer's map of one image (a random control's step, a stability draw, a final map);
- an attack step: the explainer's map with its graph kept and differentiated again (one step of a second-order
  attack on explanations).
Every selected image is counted, though only the correctly classified ones are attacked, and an attack is counted
with all its steps, though a deterministic one stops computing an image at a fixed point: the estimate is an upper
bound (docs/attacking-explanations.md, "Cost before compute", has measured examples). Training is timed on its own
second step (`engine.train`), which is the real work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.engine.progress import set_command_plan

log = logging.getLogger("attrobust")
LONG_ON_CPU_S = 1800.0  # beyond this on a CPU, the estimate line names a cheaper way
CALIBRATION_IMAGES = 2


@dataclass(frozen=True)
class PassTimes:
    """Seconds per image of each kind of pass, measured on this device."""

    first_order: float
    explainer: float
    attack_step: float


def _seconds_per_image(work: Callable[[], object], images: int, device: torch.device, repeats: int = 2) -> float:
    work()  # warm-up: allocations, kernel choice
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / (repeats * images)


def calibrate(model: nn.Module, x: Tensor, y: Tensor, explainer: object | None) -> PassTimes:
    """Time each kind of pass on the images `x` (labels `y`); the model's weights and gradients are untouched."""
    device = x.device

    def first_order() -> None:
        z = x.detach().requires_grad_(True)
        torch.autograd.grad(model(z).gather(1, y[:, None]).sum(), z)

    per_first = _seconds_per_image(first_order, len(x), device)
    if explainer is None:
        return PassTimes(per_first, per_first, per_first)

    def explain() -> None:
        explainer.explain(model, x, y).detach()  # type: ignore[attr-defined]

    def attack_step() -> None:
        z = x.detach().requires_grad_(True)
        maps = explainer.explain(model, z, y, create_graph=True)  # type: ignore[attr-defined]
        torch.autograd.grad(maps.abs().sum(), z)

    per_map = _seconds_per_image(explain, len(x), device, repeats=1)
    if not getattr(explainer, "differentiable", True):  # forward passes only: the attack estimates its direction
        return PassTimes(per_first, per_map, 2 * per_map)
    try:
        per_step = _seconds_per_image(attack_step, len(x), device, repeats=1)
    except RuntimeError:  # a compiled model without second derivatives: the attack estimates its direction
        per_step = 2 * per_map
    return PassTimes(per_first, per_map, per_step)


@dataclass(frozen=True)
class Part:
    """One part of a command, its estimated seconds, and the name its progress reports under."""

    name: str
    seconds: float
    progress: str = ""


def describe(parts: list[Part], device: torch.device, cheaper: str) -> str:
    """'estimated cost on cpu: accuracy 12 s, topk 8,600 s, ...: about 2.4 h in all' (+ `cheaper` when long on a
    CPU)."""
    total = sum(part.seconds for part in parts)
    listed = ", ".join(f"{part.name} {duration(part.seconds)}" for part in parts)
    line = f"estimated cost on {device.type} (an upper bound from a short calibration): {listed}: about " \
           f"{duration(total)} in all"
    if device.type == "cpu" and total > LONG_ON_CPU_S and cheaper:
        line += f"; long for a CPU: {cheaper}"
    return line


def announce(parts: list[Part], device: torch.device, cheaper: str) -> None:
    """Log the estimate, and let each part's progress ETA cover the parts after it."""
    log.info("%s", describe(parts, device, cheaper))
    set_command_plan([(part.progress, part.seconds) for part in parts if part.progress])


def duration(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
