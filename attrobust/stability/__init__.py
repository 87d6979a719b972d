"""Stability of explanations under random perturbations (the metrics Quantus popularised): `STABILITY.build(entry)`.

A stability metric draws `samples` random perturbations of each image, explains each perturbed image with the
evaluation's explainer and reduces one score per draw to one value per image (max or mean). The contract and the
batched driver are in `attrobust.stability.base`; each metric is one file here, registered by existing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrobust.errors import AttrobustError
from attrobust.registry import Registry, import_components
from attrobust.stability.base import StabilityMetric, StabilityResult, estimate, perturbations

STABILITY: Registry[StabilityMetric] = Registry("stability")

import_components(__name__, __path__)


def build_stability(entries: Sequence[str | Mapping[str, Any]], key: str = "eval.stability") -> list[StabilityMetric]:
    """The stability metrics of a list of names or mappings ({name: max_sensitivity, samples: 50}); may be empty."""
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
        raise AttrobustError(f"{key} must be a list such as [max_sensitivity,avg_sensitivity], got {entries!r}")
    built = []
    for entry in entries:
        if not isinstance(entry, (str, Mapping)):
            raise AttrobustError(f"{key} entries are names or {{name: ..., setting: ...}}, got {entry!r}")
        built.append(STABILITY.build({"name": entry} if isinstance(entry, str) else entry))
    names = [metric.column for metric in built]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise AttrobustError(f"{key} lists {', '.join(twice)} more than once")
    return built


def heading_of(column: str) -> str | None:
    """The table heading of a stability metric's column (None: not one)."""
    return STABILITY.get(column).heading if column in STABILITY.names() else None


__all__ = ["STABILITY", "StabilityMetric", "StabilityResult", "build_stability", "estimate", "heading_of",
           "perturbations"]
