"""The passes an attack on explanations may leave unspent (`direction_points`, `selection_points`, `patience`), and
the checks of every attack setting. The knobs are off by default, so an attack runs as the reference's does; what
each buys in strength per pass is measured by scripts/attack_frontier.py (docs/attacking-explanations.md,
"Strength per pass").

- `direction_points`: the explainer's passes per image (IG path points, SmoothGrad samples) for the attack's
  direction only; the maps that are scored keep the explainer's own. The direction is a sign, so a coarser map can
  point the same way at a fraction of the passes (a step's second-order pass is the attack's largest cost).
- `selection_points`: the explainer's passes per image for the maps that choose the kept iterate after each step;
  the kept iterate's map is then computed once with the explainer's own passes, and that map is scored.
- `patience`: an image stops after this many steps in a row without lowering its selection criterion (the kept
  iterate is final); the random controls always run every step, as they are what the attack must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from attrobust.attacks.selection import MASS_CENTER, OLD_MEASURES
from attrobust.explainers.base import Explainer
from attrobust.metrics import METRICS

if TYPE_CHECKING:
    from attrobust.attacks.attribution import AttributionAttack


@dataclass
class Patience:
    """Per image, the steps in a row since its selection criterion last went down."""

    limit: int | None  # None: no image stops early
    stale: Tensor      # (B,) steps without improvement

    @classmethod
    def start(cls, limit: int | None, images: int, device: torch.device) -> Patience:
        return cls(limit, torch.zeros(images, dtype=torch.long, device=device))

    def going_on(self, images: Tensor, before: Tensor, after: Tensor) -> Tensor:
        """Record one step of `images` (indices) whose criterion went from `before` to `after`; which go on (bool)."""
        if self.limit is None:
            return torch.ones(len(images), dtype=torch.bool, device=images.device)
        self.stale[images] = torch.where(after < before, 0, self.stale[images] + 1)
        return self.stale[images] < self.limit


def check_settings(attack: AttributionAttack) -> None:
    """Raise ValueError naming the first setting of `attack` that is out of range."""
    if not (0 < attack.eps < math.inf and 0 < attack.step_size < math.inf):
        raise ValueError(f"eps and step_size must be positive and finite, got {attack.eps} and {attack.step_size}")
    if not isinstance(attack.explainer, Explainer):
        raise ValueError("the explainer is chosen with explainer=NAME, not as a setting of the attack")
    for key in ("steps", "restarts", "k", "eval_k", "direction_points", "selection_points", "patience"):
        if getattr(attack, key) is not None and getattr(attack, key) < 1:
            raise ValueError(f"{key} must be >= 1{'' if key in ('steps', 'restarts') else ' (or null)'}, got "
                             f"{getattr(attack, key)}")
    if not 0 < attack.surrogate_beta < math.inf:
        raise ValueError(f"surrogate_beta must be positive and finite, got {attack.surrogate_beta}")
    if attack.direction not in ("analytic", "estimated"):
        raise ValueError(f"direction must be analytic or estimated, got '{attack.direction}'")
    if attack.probes < 1 or not 0 < attack.probe_radius < math.inf:
        raise ValueError(f"probes must be >= 1 and probe_radius positive, got {attack.probes} and "
                         f"{attack.probe_radius}")
    measure = OLD_MEASURES.get(attack.measure, attack.measure)
    if measure != MASS_CENTER and measure not in METRICS.names():
        raise ValueError(f"measure must be a registered metric or {MASS_CENTER}: "
                         f"{', '.join([*METRICS.names(), MASS_CENTER])}; got '{attack.measure}'")
    if attack.restarts_by not in ("measure", "kendall"):
        raise ValueError(f"restarts_by must be measure or kendall, got '{attack.restarts_by}'")
    for key in ("direction_points", "selection_points"):
        if getattr(attack, key) is not None:
            attack.explainer.with_passes(getattr(attack, key))  # raises for an explainer with a fixed count
