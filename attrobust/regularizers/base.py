"""The objective contract shared by every regulariser.

`objective(model, x, y) -> LossOutput(loss, logits, terms)`: `loss` is the scalar to minimise (reduced over the
batch as `reduction` says), `logits` are the model's outputs on the clean `x` (for accuracy), and `terms` holds each
component as a detached per-example mean (for the training log, comparable across reductions). An objective never
touches the optimizer, never mutates `x` or `y`, and leaves `model.training` as it found it, so one training loop
serves every regulariser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Self

from torch import Tensor, nn

Reduction = Literal["sum", "mean"]
REDUCTIONS: tuple[Reduction, ...] = ("sum", "mean")


@dataclass(frozen=True)
class LossOutput:
    loss: Tensor
    logits: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class Objective(Protocol):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput: ...

    def for_epoch(self, epoch: int) -> Self:
        """The objective to use during `epoch` (0-based): schedules such as an eps warm-up live here."""
        ...


def reduce(per_example: Tensor, reduction: Reduction) -> Tensor:
    """Sum (the reference code's convention) or mean over the batch dimension."""
    return per_example.sum() if reduction == "sum" else per_example.mean()


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
