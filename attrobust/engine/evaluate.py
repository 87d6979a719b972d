"""Evaluation: natural accuracy and accuracy under attack, batched, one host sync at the end."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from attrobust.data.base import ImageSet
from attrobust.engine.progress import ProgressReporter


class PredictionAttack(Protocol):
    def describe(self) -> str: ...

    def robust(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class AccuracyCounts:
    n: int
    natural_correct: int
    robust_correct: int | None  # None when no attack ran

    @property
    def natural_accuracy_pct(self) -> float:
        return 100.0 * self.natural_correct / self.n

    @property
    def adversarial_accuracy_pct(self) -> float | None:
        return None if self.robust_correct is None else 100.0 * self.robust_correct / self.n


def evaluate_accuracy(model: nn.Module, data: ImageSet, attack: PredictionAttack | None, batch_size: int,
                      log_every_s: float = 30.0) -> AccuracyCounts:
    """Count correct predictions on clean inputs and, if `attack` is given, on attacked inputs.

    Accuracy under attack counts an example as correct only if it is classified correctly after the attack
    (an example misclassified when clean is not attacked; it is counted as not robust).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    natural = torch.zeros((), dtype=torch.long, device=device)
    robust = torch.zeros((), dtype=torch.long, device=device)
    batches = -(-len(data) // batch_size)
    try:
        with ProgressReporter("evaluate", batches, log_every_s) as progress:
            for start in range(0, len(data), batch_size):
                x, y = data.batch(slice(start, start + batch_size), device)
                with torch.inference_mode():
                    correct = model(x).argmax(dim=1) == y
                natural += correct.sum()
                # one wait for the device per batch (PGD's many passes dominate): attack only what is correct
                if attack is not None and bool(correct.any()):
                    robust += attack.robust(model, x[correct], y[correct]).sum()
                progress.advance(1)
    finally:
        model.train(was_training)
    return AccuracyCounts(len(data), int(natural), None if attack is None else int(robust))


@dataclass(frozen=True)
class EvalSettings:
    batch_size: int
    metrics: tuple[str | Mapping[str, Any], ...]  # per-image measures of attribution attacks (conf/eval/default.yaml)
    baselines: tuple[str, ...]                    # random controls run by `evaluate` and `attack` beside the attack
    num_examples: int | None = None
    attribution_batch_size: int | None = None  # images per attribution-attack chunk; None: auto
    protocol: Literal["reference", "robust"] = "reference"  # see conf/eval/default.yaml
    indices: tuple[int, ...] | None = None   # these test images (indices into the test split), in this order
    classes: tuple[int, ...] | None = None   # only test images of these labels
    sample: int | None = None                # a random sample of this many (seeded by `seed`), in index order
    stability: tuple[str | Mapping[str, Any], ...] = ()  # stability metrics `evaluate` adds (attrobust list stability)

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        for key in ("num_examples", "sample"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be positive or null, got {value}")
        if self.indices is not None and not self.indices:
            raise ValueError("indices must list at least one test image, or be null for all")
        if self.attribution_batch_size is not None and self.attribution_batch_size <= 0:
            raise ValueError(f"attribution_batch_size must be positive or null, got {self.attribution_batch_size}")
