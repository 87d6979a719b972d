"""Optimisers: `OPTIMIZERS.build(cfg.optim).build(model.parameters())`."""

from __future__ import annotations

from typing import Any

from attrobust.optim.schedules import lr_factor
from attrobust.registry import Registry, import_components

OPTIMIZERS: Registry[Any] = Registry("optim")

import_components(__name__, __path__, skip=("schedules",))

__all__ = ["OPTIMIZERS", "lr_factor"]
