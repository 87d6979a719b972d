"""Your own arrays: `<path>/train.npz` and `<path>/test.npz`, each with `x` (images) and `y` (integer labels).

`x` is uint8 in 0..255, or float in [0, 1] (rounded to uint8 levels), shaped (N, H, W) for grey images,
(N, H, W, C) or (N, C, H, W) with C = 1 or 3 (`layout: auto` tells them apart by where the 1 or 3 is).
Labels are 0..num_classes-1; `num_classes: null` counts them (the largest label + 1).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attrobust.data import DATASETS
from attrobust.data.base import DatasetSpec, ImageSet, Splits, class_labels
from attrobust.errors import AttrobustError, choices

LAYOUTS = ("auto", "nhwc", "nchw")


@DATASETS.register("npz")
@dataclass(frozen=True)
class NpzData(DatasetSpec):
    infers_classes = True

    path: str
    layout: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {choices(LAYOUTS)}, got '{self.layout}'")

    def load(self) -> Splits:
        root = Path(self.path)
        train, test = (read_split(root / f"{split}.npz", self.layout) for split in ("train", "test"))
        if train.images.shape[1:] != test.images.shape[1:]:
            raise AttrobustError(f"wrong npz layout: train images are {tuple(train.images.shape[1:])} but test "
                                 f"images are {tuple(test.images.shape[1:])} (C, H, W)")
        found = int(max(train.labels.max(), test.labels.max())) + 1 if len(train) and len(test) else 0
        return Splits(f"npz:{root.name}", train, test, self.num_classes if self.num_classes is not None else found)


def read_split(path: Path, layout: str) -> ImageSet:
    if not path.is_file():
        raise AttrobustError(f"npz dataset not found: expected {path} (arrays x and y); set dataset.path=DIR")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise AttrobustError(f"wrong npz layout: {path} needs arrays 'x' and 'y', has "
                                     f"{', '.join(arrays.files) or 'none'}")
            x, y = arrays["x"], arrays["y"]
    except ValueError as error:
        if "allow_pickle" in str(error):  # numpy's own advice (load with allow_pickle=True) would run its code
            raise AttrobustError(f"refused npz file {path}: it stores an array of Python objects (a pickle, which can "
                                 f"run code); save x and y as numeric arrays (np.savez(path, x=uint8 or float32 "
                                 f"images, y=integer labels))") from error
        raise AttrobustError(f"corrupt npz file {path}: {error}") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise AttrobustError(f"corrupt npz file {path}: {error}") from error
    if len(x) == 0:
        raise AttrobustError(f"the {path.stem} split is empty: {path} has no images")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise AttrobustError(f"wrong npz layout: {path} has y {y.dtype} {y.shape}; expected {len(x)} integer labels")
    return ImageSet(to_uint8_nchw(x, layout, path), class_labels(y, path, "npz"))



def to_uint8_nchw(x: np.ndarray, layout: str, path: Path) -> torch.Tensor:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise AttrobustError(f"wrong npz layout: {path} has x of shape {x.shape}; expected (N, H, W), "
                             f"(N, H, W, C) or (N, C, H, W)")
    elif layout == "nhwc" or (layout == "auto" and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3)):
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise AttrobustError(f"wrong npz layout: {path} images have {x.shape[1]} channels (C, H, W) = "
                             f"{x.shape[1:]}; expected 1 or 3 (set dataset.layout=nhwc|nchw)")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise AttrobustError(f"wrong npz layout: {path} has {int((~np.isfinite(x)).sum()):,} non-finite pixel values "
                             f"(NaN or infinity); give uint8 0..255 or finite floats in [0, 1]")
    if np.issubdtype(x.dtype, np.floating) and x.size and (x.min() < 0 or x.max() > 1):
        raise AttrobustError(f"wrong npz layout: {path} has float images outside [0, 1] "
                             f"({x.min():.3g} .. {x.max():.3g}); give uint8 0..255 or floats in [0, 1]")
    if not np.issubdtype(x.dtype, np.floating):
        raise AttrobustError(f"wrong npz layout: {path} has x of dtype {x.dtype}; expected uint8 or float")
    return torch.from_numpy(np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8)))
