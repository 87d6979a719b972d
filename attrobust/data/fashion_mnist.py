"""Fashion-MNIST (Xiao et al.) through torchvision, 60,000 train / 10,000 test from `<root>/FashionMNIST/raw`."""

from __future__ import annotations

from dataclasses import dataclass


from attrobust.data import DATASETS
from attrobust.data.base import DatasetSpec, Splits
from attrobust.data.idx import load_idx_dataset


@DATASETS.register("fashion_mnist")
@dataclass(frozen=True)
class FashionMnist(DatasetSpec):
    root: str = "data"
    download: bool = False

    def load(self) -> Splits:
        from torchvision import datasets  # imported when used: a second saved on every command

        return load_idx_dataset(datasets.FashionMNIST, "fashion_mnist", self.root, self.download, self.num_classes)
