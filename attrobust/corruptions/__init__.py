"""Corruptions for out-of-distribution accuracy (after MNIST-C, Mu and Gilmer 2019, and ImageNet-C, Hendrycks and
Dietterich 2019): `CORRUPTIONS.build(entry)`; one file each, registered by existing.

A corruption maps a batch in [0, 1] to a batch in [0, 1] at a severity 1..5, on the batch's device, with random
draws that depend only on the seed and each image's index in the test split (`attrobust.corruptions.base`), so an
image is corrupted the same way in any batch, shard or run with that seed. `compose` applies several in turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrobust.corruptions.base import Corruption
from attrobust.registry import Registry, build_listed, import_components

CORRUPTIONS: Registry[Corruption] = Registry("corruption")

import_components(__name__, __path__)


def build_corruptions(entries: Sequence[str | Mapping[str, Any]], key: str = "eval.corruptions") -> list[Corruption]:
    """The corruptions of a list of names or mappings ({name: rotate, severities: [5]}); may be empty."""
    return build_listed(CORRUPTIONS, entries, key, "[gaussian_noise,{name:rotate,severities:[1,5]}]", allow_empty=True)


__all__ = ["CORRUPTIONS", "Corruption", "build_corruptions"]
