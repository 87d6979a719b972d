"""Explainers: `EXPLAINERS.build(cfg.explainer)`; one file and one `conf/explainer/<name>.yaml` each.

The contract is `attrobust.explainers.base.Explainer`. Every module of this package registers itself on import.
"""

from __future__ import annotations

from attrobust.explainers.base import Explainer
from attrobust.registry import Registry, import_components

EXPLAINERS: Registry[Explainer] = Registry("explainer")

import_components(__name__, __path__)

__all__ = ["EXPLAINERS", "Explainer"]
