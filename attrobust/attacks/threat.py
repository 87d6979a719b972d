"""The threat model: the L-inf radius `eps` and the settings of the attacks and attribution terms that read it, in
[0, 1] pixel units; `conf/threat/<name>.yaml`, chosen by each dataset's defaults (`threat=NAME` picks another,
`threat.eps=0.1` changes one number). Regularisers and attacks read it by interpolation (`${threat.eps}`), so each
number lives in one place. Checkpoints store it as `threat_cfg`; those written before it had its own group kept it
inside `dataset_cfg`, from which `attrobust.trained` reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THREAT_KEYS = ("eps", "pgd", "attribution_attack", "attribution_training")  # the group's keys


@dataclass(frozen=True)
class PGDSettings:
    """A dataset's reference PGD settings (training and accuracy under attack), in [0, 1] pixel units."""

    steps: int
    step_size: float

    def __post_init__(self) -> None:
        check_counts(steps=self.steps)
        check_step_size(self.step_size)


@dataclass(frozen=True)
class AttributionAttackSettings:
    """A dataset's reference attribution-attack settings (RAR reference `config.json`), in [0, 1] pixel units."""

    steps: int
    step_size: float
    k: int | None       # top-k pixels attacked (reference k_top); null: an eighth of the map, at most 100
    eval_k: int | None  # top-k pixels reported (reference eval_k_top); null as k
    ig_steps: int   # IG points of the saliency maps (reference num_IG_steps)

    def __post_init__(self) -> None:
        check_counts(steps=self.steps, k=self.k, eval_k=self.eval_k, ig_steps=self.ig_steps)
        check_step_size(self.step_size)


@dataclass(frozen=True)
class AttributionTrainingSettings:
    """A dataset's reference IG settings for IG-NORM / IG-SUM-NORM training (RAR reference `m`, `approx_factor`)."""

    ig_steps: int        # m: IG points of the outer attribution term
    approx_factor: int   # the inner maximisation uses m / approx_factor points

    def __post_init__(self) -> None:
        check_counts(ig_steps=self.ig_steps, approx_factor=self.approx_factor)


def check_counts(**counts: int | None) -> None:
    """ValueError naming the first count below 1 (no attack step, no IG point, no attacked pixel: no measurement);
    None (an automatic value) passes."""
    for key, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")


def check_step_size(step_size: float) -> None:
    if not 0 < step_size < math.inf:
        raise ValueError(f"step_size must be positive and finite, got {step_size}")


@dataclass(frozen=True)
class ThreatModel:
    """`conf/threat/*.yaml`: a dataset's reference threat model."""

    eps: float
    pgd: PGDSettings
    attribution_attack: AttributionAttackSettings
    attribution_training: AttributionTrainingSettings

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] (images are in [0, 1]: 8/255 is 0.0314), got {self.eps}")
