"""Faithfulness of explanations: does removing (or revealing) the pixels an explanation ranks first change the model's
output as it claims? `FAITHFULNESS.build(entry)`; the contract and the batched driver are in
`attrobust.faithfulness.base`, each metric is one file here, registered by existing.

Caveat (in the README, and logged by every evaluation with these columns): insertion and deletion curves follow the
model's confidence, so models of different confidence (adversarially trained ones are less confident) are not
comparable on them alone (Nourelahi et al., "How explainable are adversarially-robust CNNs?", 2022); compare
explainers on one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrobust.faithfulness.base import FaithfulnessMetric, curves, importance
from attrobust.registry import Registry, build_listed, import_components

FAITHFULNESS: Registry[FaithfulnessMetric] = Registry("faithfulness")

import_components(__name__, __path__)


def build_faithfulness(entries: Sequence[str | Mapping[str, Any]],
                       key: str = "eval.faithfulness") -> list[FaithfulnessMetric]:
    """The faithfulness metrics of a list of names or mappings ({name: deletion, steps: 28}); may be empty."""
    return build_listed(FAITHFULNESS, entries, key, "[insertion,deletion]", allow_empty=True)


def heading_of(column: str) -> str | None:
    """The table heading of a faithfulness metric's column (None: not one)."""
    return FAITHFULNESS.get(column).heading if column in FAITHFULNESS.names() else None


__all__ = ["FAITHFULNESS", "FaithfulnessMetric", "build_faithfulness", "curves", "heading_of", "importance"]
