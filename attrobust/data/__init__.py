"""Datasets: `DATASETS.build(cfg.dataset).load()` gives in-memory train/test splits."""

from __future__ import annotations

from attrobust.data.base import DatasetSpec, ImageSet, PGDSettings, Splits
from attrobust.registry import Registry

DATASETS: Registry[DatasetSpec] = Registry("dataset")

# Importing a component module registers it.
from attrobust.data import fashion_mnist, flower17, folder, gtsrb, mnist, mnist_mini, npz  # noqa: E402,F401

__all__ = ["DATASETS", "DatasetSpec", "ImageSet", "PGDSettings", "Splits"]
