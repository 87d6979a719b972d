"""Stability of explanations under random perturbations (the metrics Quantus popularised): `STABILITY.build(entry)`.

A stability metric draws `samples` random perturbations of each image, explains each perturbed image with the
evaluation's explainer and reduces one score per draw to one value per image (max or mean). The contract and the
batched driver are in `attrobust.stability.base`; each metric is one file here, registered by existing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrobust.registry import Registry, build_listed, import_components
from attrobust.stability.base import StabilityMetric, StabilityResult, estimate, perturbations

STABILITY: Registry[StabilityMetric] = Registry("stability")

import_components(__name__, __path__)


def build_stability(entries: Sequence[str | Mapping[str, Any]], key: str = "eval.stability") -> list[StabilityMetric]:
    """The stability metrics of a list of names or mappings ({name: max_sensitivity, samples: 50}); may be empty."""
    return build_listed(STABILITY, entries, key, "[max_sensitivity,avg_sensitivity]", allow_empty=True)


def heading_of(column: str) -> str | None:
    """The table heading of a stability metric's column (None: not one)."""
    return STABILITY.get(column).heading if column in STABILITY.names() else None


__all__ = ["STABILITY", "StabilityMetric", "StabilityResult", "build_stability", "estimate", "heading_of",
           "perturbations"]
