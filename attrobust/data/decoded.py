"""The shared fields of datasets decoded from image files into cached tensors (GTSRB, Flower-17)."""

from __future__ import annotations

from dataclasses import dataclass

from attrobust.data.augment import balance_classes
from attrobust.data.base import DatasetSpec, ImageSet


@dataclass(frozen=True)
class DecodedDatasetSpec(DatasetSpec):
    root: str = "data"
    download: bool = False
    size: int = 32                         # images resized to size x size
    balance_per_class: int | None = None   # grow each training class to N images by random distortion
    augment_seed: int = 0
    cache: bool = True                     # decoded, preprocessed tensors kept in <data folder>/.attrobust_cache
    workers: int = 0                       # decoding processes (0: one per core, at most 8)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.balance_per_class is not None and self.balance_per_class <= 0:
            raise ValueError(f"balance_per_class must be positive or null, got {self.balance_per_class}")

    def balanced(self, train: ImageSet) -> ImageSet:
        """`train` grown to `balance_per_class` images per class (unchanged when that is null)."""
        if self.balance_per_class is None:
            return train
        return balance_classes(train, self.balance_per_class, int(self.num_classes), self.augment_seed)
