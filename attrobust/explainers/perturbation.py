"""What the perturbation-based explainers share: the target's score on many perturbed copies, in batched passes.

Forward passes only (no gradient is taken), so these explainers are not differentiable (`Explainer.differentiable`):
an attack on them estimates its direction (`direction=estimated`) and training objectives refuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from attrobust.explainers.base import NotDifferentiable

Score = Literal["logit", "probability"]
SCORES = ("logit", "probability")


def target_scores(model: nn.Module, perturbed: Callable[[int, int], Tensor], count: int, target: Tensor,
                  rows: int | None, score: Score = "logit") -> Tensor:
    """(count, B): the target's logit (or softmax probability) on `perturbed(start, stop)` -> (stop - start, B, C,
    H, W) copies of the batch, in passes of about `rows` rows (None: all at once)."""
    batch = target.shape[0]
    per_pass = count if rows is None else max(1, rows // batch)
    parts = []
    with torch.no_grad():
        for start in range(0, count, per_pass):
            copies = perturbed(start, min(count, start + per_pass))
            logits = model(copies.flatten(0, 1))
            values = logits.softmax(1) if score == "probability" else logits
            parts.append(values.gather(1, target.repeat(copies.shape[0]).view(-1, 1)).view(copies.shape[0], batch))
    return torch.cat(parts)


def refuse_create_graph(name: str, create_graph: bool) -> None:
    """A second-order use (an analytic attack direction, a training objective) of a forward-only map: one line."""
    if create_graph:
        raise NotDifferentiable(name, "a map differentiable in x was asked for")
