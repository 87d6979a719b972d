"""`eval.protocol`: how attacks on explanations are run and which measures head the table, as one object chosen by
name.

- `reference`: the RAR reference's attack (from the image itself) and its accounting (an image without a counted
  iterate scores as unchanged maps); the metrics are `eval.metrics` as listed.
- `robust`: every attack on explanations starts from a random point of the eps-ball, and LENS recall is added to
  `eval.metrics` when it is not listed. The strict accounting (images with a counted iterate) is the headline under
  every protocol (reporting/tables.py).
- `fast`: `robust` at a fraction of the attack's passes: at most 2 restarts, half the steps (each twice as long), a
  fifth of the explainer's passes (IG points, SmoothGrad samples) for the attack's direction and for the maps that
  select the kept iterate (the kept map is drawn in full). An explainer with a fixed pass count keeps its passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from attrobust.errors import AttrobustError, choices
from attrobust.metrics import Metric, build_metrics

A = TypeVar("A")


@dataclass(frozen=True)
class Protocol:
    name: str
    random_start: bool  # every attack on explanations starts from a random point of the eps-ball
    adds_lens_recall: bool  # LENS recall joins eval.metrics when it is not listed
    # the attack's budget as this protocol spends it (attacks/budget.py); the defaults leave the attack as configured
    max_restarts: int | None = None  # at most this many runs of each attack on explanations (None: the attack's own)
    step_divisor: int = 1            # steps / d, the step size scaled to keep steps x step_size: as far in fewer
    direction_divisor: int = 1       # the direction's explainer passes / d (IG points, SmoothGrad samples)
    selection_divisor: int = 1       # the selecting maps' explainer passes / d (the kept map is drawn in full)
    patience: int | None = None      # an image stops after this many steps without a lower criterion

    def metrics(self, entries: Sequence[str | Mapping[str, Any]]) -> list[Metric]:
        """`eval.metrics` as this protocol scores them."""
        metrics = build_metrics(entries)
        if self.adds_lens_recall and not any(m.column.startswith("lens_recall") for m in metrics):
            metrics += build_metrics(["lens_recall"])
        return metrics

    def attack(self, attack: A) -> A:
        """The attack on explanations as this protocol runs it (an AttributionAttack: its random controls are made
        from it, so they get the same start, steps and restarts)."""
        changes = self.changes(attack)
        return dataclasses.replace(attack, **changes) if changes else attack  # type: ignore[type-var]

    def changes(self, attack: Any) -> dict[str, Any]:
        """The settings of `attack` this protocol changes, with their new values."""
        changes: dict[str, Any] = {}
        if self.random_start and not attack.random_start:
            changes["random_start"] = True
        if self.max_restarts is not None and attack.restarts > self.max_restarts:
            changes["restarts"] = self.max_restarts
        if self.step_divisor > 1:
            steps = max(1, attack.steps // self.step_divisor)
            changes.update(steps=steps, step_size=attack.step_size * attack.steps / steps)  # as far as before
        adjustable = attack.explainer.adjustable_passes
        if self.direction_divisor > 1 and attack.direction_points is None and adjustable is not None:
            changes["direction_points"] = max(1, adjustable // self.direction_divisor)
        if self.selection_divisor > 1 and attack.selection_points is None and adjustable is not None:
            changes["selection_points"] = max(1, adjustable // self.selection_divisor)
        if self.patience is not None and attack.patience is None:
            changes["patience"] = self.patience
        return changes


PROTOCOLS = {protocol.name: protocol for protocol in (
    Protocol("reference", random_start=False, adds_lens_recall=False),
    Protocol("robust", random_start=True, adds_lens_recall=True),
    # robust's attack at a fraction of its passes: the knobs that scripts/attack_frontier.py found (nearly) free, each
    # within robust's interval on its own (docs/strength-per-pass.md)
    Protocol("fast", random_start=True, adds_lens_recall=True, max_restarts=2, step_divisor=2, direction_divisor=5,
             selection_divisor=5))}


def protocol_named(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise AttrobustError(f"eval.protocol={name} is not a protocol; choose one of: {choices(PROTOCOLS)}")
    return PROTOCOLS[name]
