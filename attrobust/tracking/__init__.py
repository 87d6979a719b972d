"""Experiment trackers, chosen with `logger=csv|tensorboard|mlflow|wandb` (several at once: `logger=[csv,mlflow]`;
`logger=none`, the default, logs nothing). One registered tracker per file, one YAML per tracker in conf/logger/."""

from __future__ import annotations

from attrobust.registry import Registry, import_components
from attrobust.tracking.base import Tracker

LOGGERS: Registry[Tracker] = Registry("logger")

import_components(__name__, __path__, skip=("base", "session"))

__all__ = ["LOGGERS", "Tracker"]
