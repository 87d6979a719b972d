"""Optimisers: `OPTIMIZERS.build(cfg.optim).build(model.parameters())`."""

from __future__ import annotations

from typing import Any

from attrobust.registry import Registry

OPTIMIZERS: Registry[Any] = Registry("optim")

from attrobust.optim import adam, sgd  # noqa: E402,F401
from attrobust.optim.schedules import lr_factor  # noqa: E402

__all__ = ["OPTIMIZERS", "lr_factor"]
