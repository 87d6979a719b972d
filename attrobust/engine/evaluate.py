"""Evaluation: natural accuracy and accuracy under attack, batched, one row per image (sharded: `engine.sharding`)."""

from __future__ import annotations

import math

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.data.base import ImageSet
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.sharding import WHOLE, Shard, unit_seed


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
        return 100.0 * self.natural_correct / self.n if self.n else float("nan")

    @property
    def adversarial_accuracy_pct(self) -> float | None:
        if self.robust_correct is None:
            return None
        return 100.0 * self.robust_correct / self.n if self.n else float("nan")


def accuracy_per_image(model: nn.Module, data: ImageSet, attack: PredictionAttack | None, batch_size: int,
                       seed: int = 0, shard: Shard = WHOLE, log_every_s: float = 30.0,
                       margins: bool = False) -> pd.DataFrame:
    """One row per test image of this shard's batches: `index` (in the test split), `label`, `correct` (clean) and,
    if `attack` is given, `robust` (classified correctly after the attack); with `margins`, `margin`: the clean
    image's label logit minus the largest other logit (float64; what a Lipschitz certificate reads).

    An example misclassified when clean is not attacked; it counts as not robust. Each batch of `batch_size` draws
    the attack's random numbers from its own seed (`unit_seed`: `seed` and its first position), so a shard's rows
    are the unsharded run's.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    units = list(shard.units(len(data), batch_size))
    positions, natural, robust, margin = [], [], [], []
    try:
        with ProgressReporter("evaluate", len(units), log_every_s) as progress:
            for first, end in units:
                x, y = data.batch(slice(first, end), device)
                with torch.inference_mode():
                    logits = model(x)
                    correct = logits.argmax(dim=1) == y
                    if margins:
                        margin.append(label_margin(logits.double(), y))
                positions.append(torch.arange(first, end))
                natural.append(correct)
                # one wait for the device per batch (PGD's many passes dominate): attack only what is correct
                if attack is not None:
                    kept = torch.zeros_like(correct)
                    if bool(correct.any()):
                        torch.manual_seed(unit_seed(seed, first, "accuracy"))
                        kept[correct] = attack.robust(model, x[correct], y[correct])
                    robust.append(kept)
                progress.advance(1)
    finally:
        model.train(was_training)
    at = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.int64)
    rows = {"index": data.index[at].numpy(), "label": data.labels[at].numpy(),
            "correct": (torch.cat(natural).cpu() if natural else torch.zeros(0, dtype=torch.bool)).numpy()}
    if attack is not None:
        rows["robust"] = (torch.cat(robust).cpu() if robust else torch.zeros(0, dtype=torch.bool)).numpy()
    if margins:
        rows["margin"] = (torch.cat(margin).cpu() if margin else torch.zeros(0, dtype=torch.float64)).numpy()
    return pd.DataFrame(rows)


def label_margin(logits: Tensor, y: Tensor) -> Tensor:
    """The label's logit minus the largest other logit (negative when misclassified)."""
    label = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return label - others


def accuracy_counts(per_image: pd.DataFrame) -> AccuracyCounts:
    """Natural and (if measured) robust counts of `accuracy_per_image`'s rows."""
    robust = int(per_image["robust"].astype(bool).sum()) if "robust" in per_image else None
    return AccuracyCounts(len(per_image), int(per_image["correct"].astype(bool).sum()), robust)


def evaluate_accuracy(model: nn.Module, data: ImageSet, attack: PredictionAttack | None, batch_size: int,
                      seed: int = 0, log_every_s: float = 30.0) -> AccuracyCounts:
    """Count correct predictions on clean inputs and, if `attack` is given, on attacked inputs (`accuracy_per_image`
    over every image)."""
    return accuracy_counts(accuracy_per_image(model, data, attack, batch_size, seed, WHOLE, log_every_s))


@dataclass(frozen=True)
class EvalSettings:
    batch_size: int
    metrics: tuple[str | Mapping[str, Any], ...]  # per-image measures of attribution attacks (conf/eval/default.yaml)
    baselines: tuple[str, ...]                    # random controls run by `evaluate` and `attack` beside the attack
    num_examples: int | None = None
    attribution_batch_size: int | None = None  # images per attribution-attack chunk; None: auto
    protocol: Literal["reference", "robust", "fast"] = "reference"  # see conf/eval/default.yaml
    indices: tuple[int, ...] | None = None   # these test images (indices into the test split), in this order
    classes: tuple[int, ...] | None = None   # only test images of these labels
    sample: int | None = None                # a random sample of this many (seeded by `seed`), in index order
    certify_l2: float = 1.58   # L2 radius of the certified accuracy of Lipschitz models (pixels in [0, 1])
    shard: int | None = None   # this shard of the evaluation's work (engine/sharding.py); None: all of it
    num_shards: int = 1        # shards the work is split into (merge their folders with `attrobust merge`)
    bootstrap: int = 1000      # resamples of the images behind each mean's interval (0: none; reporting/intervals.py)
    confidence: float = 0.95   # the intervals' level

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        for key in ("num_examples", "sample"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"{key} must be positive or null, got {value}")
        if self.indices is not None and not self.indices:
            raise ValueError("indices must list at least one test image, or be null for all")
        if not 0 < self.certify_l2 < math.inf:
            raise ValueError(f"certify_l2 must be a positive, finite L2 radius, got {self.certify_l2}")
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.shard is not None and not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in 0 .. {self.num_shards - 1} (num_shards={self.num_shards}), got "
                             f"{self.shard}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0 resamples (0: no intervals), got {self.bootstrap}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {self.confidence}")
        if self.attribution_batch_size is not None and self.attribution_batch_size <= 0:
            raise ValueError(f"attribution_batch_size must be positive or null, got {self.attribution_batch_size}")
