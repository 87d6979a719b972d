"""Regularisers (training objectives): `REGULARIZERS.build(cfg.reg)`; contract in `regularizers.base`."""

from __future__ import annotations

from attrobust.regularizers.base import LossOutput, Objective, Reduction, reduce
from attrobust.registry import Registry, import_components

REGULARIZERS: Registry[Objective] = Registry("reg")

# every module registers its objective; base, adversarial and ig_terms hold what they share
import_components(__name__, __path__, skip=("base", "adversarial", "ig_terms"))

__all__ = ["REGULARIZERS", "LossOutput", "Objective", "Reduction", "reduce"]
