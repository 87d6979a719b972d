"""Attacks, two kinds with two registries and one config group (`conf/attack/`):

- `PREDICTION_ATTACKS` (images -> images that change the prediction; accuracy under attack): `pgd`, `pgd_l2`,
  `autoattack`;
- `ATTRIBUTION_ATTACKS` (an explainer + an objective on its map + a selection metric; attack on explanations):
  `topk`, `mass_center`, `target`, and the random baselines a real attack must beat, `random_sign`, `random_noise`.

Every module of this package registers itself on import; the one loop they (and adversarial training) ascend with is
`attrobust.attacks.projected_ascent.projected_ascent`, in an L-inf or L2 ball.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrobust.attacks.projected_ascent import AttackObjective, L2Ball, LinfBall, pgd
from attrobust.errors import AttrobustError, choices
from attrobust.registry import Registry, import_components

if TYPE_CHECKING:
    from attrobust.attacks.attribution import AttributionAttack

PREDICTION_ATTACKS: Registry[Any] = Registry("attack")
ATTRIBUTION_ATTACKS: Registry[AttributionAttack] = Registry("attack")

import_components(__name__, __path__, skip=("attribution", "estimated", "iterates", "projected_ascent", "selection"))


def random_baselines() -> list[str]:
    """The attacks on explanations that ascend nothing (random_sign, random_noise): controls a real attack must beat."""
    return [name for name in ATTRIBUTION_ATTACKS.names()
            if not ATTRIBUTION_ATTACKS.get(name).ascends]  # type: ignore[attr-defined]


def attribution_attack(cfg: Mapping[str, Any], explainer: Any, key: str) -> AttributionAttack:
    """The attack on the explanations of `explainer` configured at `key`; prediction attacks are refused with the
    command that runs them."""
    name = str(cfg.get("name"))
    if name in PREDICTION_ATTACKS.names():
        raise AttrobustError(f"{key}={name} attacks predictions, not explanations; choose one of: "
                             f"{choices(ATTRIBUTION_ATTACKS.names())} (accuracy under attack: attrobust evaluate)")
    return ATTRIBUTION_ATTACKS.build(cfg, key, explainer=explainer)


def prediction_attack(cfg: Mapping[str, Any]) -> Any:
    """The attack of accuracy under attack (`attack=`); attacks on explanations are refused with the command that
    runs them."""
    name = str(cfg.get("name"))
    if name in ATTRIBUTION_ATTACKS.names():
        raise AttrobustError(f"attack={name} attacks explanations, not predictions; accuracy under attack needs "
                             f"attack={' or '.join(PREDICTION_ATTACKS.names())} (run attacks on explanations with: "
                             f"attrobust attack attack={name})")
    return PREDICTION_ATTACKS.build(cfg)


__all__ = ["ATTRIBUTION_ATTACKS", "PREDICTION_ATTACKS", "AttackObjective", "L2Ball", "LinfBall", "attribution_attack",
           "pgd", "prediction_attack", "random_baselines"]
