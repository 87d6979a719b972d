"""Attacks: `ATTACKS.build(cfg.attack)`; the shared loop is `attrobust.attacks.projected_ascent.pgd`."""

from __future__ import annotations

from typing import Any

from attrobust.attacks.projected_ascent import AttackObjective, LinfBall, pgd
from attrobust.registry import Registry

ATTACKS: Registry[Any] = Registry("attack")

from attrobust.attacks import mass_center, pgd_attack, random_sign, target, topk  # noqa: E402,F401

__all__ = ["ATTACKS", "AttackObjective", "LinfBall", "pgd"]
