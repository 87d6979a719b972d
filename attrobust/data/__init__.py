"""Datasets: `DATASETS.build(cfg.dataset).load()` gives in-memory train/test splits."""

from __future__ import annotations

from attrobust.data.base import DatasetSpec, ImageSet, Splits
from attrobust.registry import Registry, import_components

DATASETS: Registry[DatasetSpec] = Registry("dataset")

import_components(__name__, __path__)  # every module: a dataset registers itself, a helper registers nothing

__all__ = ["DATASETS", "DatasetSpec", "ImageSet", "Splits"]
