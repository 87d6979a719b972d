"""Regularisers (training objectives): `REGULARIZERS.build(cfg.reg)`; contract in `regularizers.base`."""

from __future__ import annotations

from attrobust.regularizers.base import LossOutput, Objective, Reduction, reduce
from attrobust.registry import Registry

REGULARIZERS: Registry[Objective] = Registry("reg")

from attrobust.regularizers import ig_norm, ig_sum_norm, input_grad, natural, pgd_training  # noqa: E402,F401

__all__ = ["REGULARIZERS", "LossOutput", "Objective", "Reduction", "reduce"]
