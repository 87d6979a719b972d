"""The objective contract shared by every regulariser.

`objective(model, x, y) -> LossOutput(loss, logits, terms)`: `loss` is the scalar to minimise (reduced over the
batch as `reduction` says), `logits` are the model's outputs on the clean `x` (for accuracy), and `terms` holds each
component as a detached per-example mean (for the training log, comparable across reductions). An objective never
touches the optimizer, never mutates `x` or `y`, and leaves `model.training` as it found it, so one training loop
serves every regulariser.

What the engine reads is declared once, in `Objective`, the base class of every regulariser: `reduction`,
`second_order` (differentiates through input gradients, so it runs the eager model, never a compiled one),
`couples_the_batch` (its loss is a whole-batch quantity that processes cannot split by examples), `check_fits` and
`for_epoch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Self

from torch import Tensor, nn

Reduction = Literal["sum", "mean"]
REDUCTIONS: tuple[Reduction, ...] = ("sum", "mean")


@dataclass(frozen=True)
class LossOutput:
    loss: Tensor
    logits: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Objective:
    """The base of every regulariser (a frozen dataclass whose fields are its YAML keys)."""

    reduction: Reduction = "sum"
    second_order: ClassVar[bool] = False
    needs_lipschitz_model: ClassVar[bool] = False  # meaningful only on a 1-Lipschitz network (HKR's margin)

    def __post_init__(self) -> None:
        check_reduction(self.reduction)

    @property
    def couples_the_batch(self) -> bool:
        """True when the loss is a whole-batch quantity (it cannot be split over processes by examples)."""
        return False

    def check_fits(self, image_shape: tuple[int, int, int]) -> None:
        """Raise ValueError (one line) if this objective cannot train on images of `image_shape` (C, H, W); the
        trainer calls it before any work, so a top-k larger than an image is refused at once."""

    def check_model(self, model: nn.Module) -> None:
        """Raise AttrobustError (one line) if this objective cannot train `model` (an explainer it uses cannot read
        it); the trainer calls it once the model is built, before any step."""

    def for_epoch(self, epoch: int) -> Self:
        """The objective to use during `epoch` (0-based): schedules such as an eps warm-up live here."""
        return self

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        raise NotImplementedError


def reduce(per_example: Tensor, reduction: Reduction) -> Tensor:
    """Sum (the reference code's convention) or mean over the batch dimension."""
    return per_example.sum() if reduction == "sum" else per_example.mean()


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
