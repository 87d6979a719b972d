"""Dataset types shared by every loader: images stay uint8 NCHW in memory, batches are float32 in [0, 1]."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from attrobust.errors import AttrobustError

log = logging.getLogger("attrobust")


@dataclass(frozen=True)
class ImageSet:
    """A labelled image split held in memory: `images` uint8 (N, C, H, W) in 0..255, `labels` int64 (N,)."""

    images: Tensor
    labels: Tensor
    pin_memory: bool = False  # CUDA batches go through page-locked memory, copied without waiting (accel.pin_memory)
    ids: Tensor | None = None  # int64 (N,): each image's index in the whole split (None: 0 .. N-1); see `select`

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels {tuple(self.labels.shape)} do not match {self.images.shape[0]} images")
        if self.ids is not None and self.ids.shape != self.labels.shape:
            raise ValueError(f"ids {tuple(self.ids.shape)} do not match {self.images.shape[0]} images")

    @property
    def index(self) -> Tensor:
        """Each image's index in the whole split (what per-image rows and figures call it)."""
        return torch.arange(len(self)) if self.ids is None else self.ids

    def select(self, positions: Tensor) -> ImageSet:
        """The images at `positions` (int64, into this set), keeping their indices in the whole split."""
        return replace(self, images=self.images[positions], labels=self.labels[positions],
                       ids=self.index[positions])

    def __len__(self) -> int:
        return self.images.shape[0]

    def head(self, n: int | None) -> ImageSet:
        """The first `n` examples (all of them when `n` is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise AttrobustError(f"num_examples must be positive, got {n}")
        return replace(self, images=self.images[:n], labels=self.labels[:n],  # views, not copies
                       ids=None if self.ids is None else self.ids[:n])

    def batch(self, index: Tensor | slice, device: torch.device) -> tuple[Tensor, Tensor]:
        """Images as float32 in [0, 1] and int64 labels on `device`."""
        images, labels = self.images[index], self.labels[index]
        if self.pin_memory and device.type == "cuda":  # a copy from pageable memory makes the host wait
            images, labels = images.pin_memory(), labels.pin_memory()
        x = images.to(device, non_blocking=True).float().div_(255.0)
        return x, labels.to(device, non_blocking=True)


@dataclass(frozen=True)
class Splits:
    """The train and test splits of a dataset."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise AttrobustError(f"dataset '{self.name}' has {self.num_classes} class(es); a classifier needs at least "
                                 f"2 (check the labels, or set dataset.num_classes)")
        for split, data in (("train", self.train), ("test", self.test)):
            if len(data) == 0:
                raise AttrobustError(f"dataset '{self.name}': the {split} split is empty")
            low, high = int(data.labels.min()), int(data.labels.max())
            if low < 0 or high >= self.num_classes:
                raise AttrobustError(
                    f"dataset '{self.name}': {split} labels span {low}..{high} but num_classes={self.num_classes}"
                )
        missing = (torch.bincount(self.train.labels, minlength=self.num_classes) == 0).nonzero().flatten().tolist()
        if missing:  # allowed (num_classes set on purpose beyond the labels present), but never silent
            log.warning("dataset '%s': class(es) %s have no training images; the model still has %d outputs",
                        self.name, ", ".join(map(str, missing)), self.num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True)
class DatasetSpec(ABC):
    """Fields every `conf/dataset/*.yaml` has; loaders add their own (root, download, ...). Data only: the threat
    model (eps and the attacks' settings) is the `threat` group each dataset's YAML chooses
    (attrobust/attacks/threat.py)."""

    num_classes: int | None   # null only where the loader counts the classes in the data (folder, npz)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    infers_classes: ClassVar[bool] = False  # True: `num_classes: null` means "count them in the data"

    def __post_init__(self) -> None:
        if self.num_classes is None and not self.infers_classes:
            raise ValueError("num_classes must be set for this dataset")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if not self.std or not all(0 < s < math.inf for s in self.std):
            raise ValueError(f"std must be positive and finite (one value, or one per channel), got {list(self.std)}")
        if len(self.mean) != len(self.std) or not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean must be finite with as many values as std, got {list(self.mean)} and "
                             f"{list(self.std)}")

    @abstractmethod
    def load(self) -> Splits:
        """Read both splits into memory (raise AttrobustError, naming the path, when files are missing)."""


MAX_CLASSES = 100_000  # more outputs than any image classifier has: a label above it is a mistake in the file


def class_labels(y: np.ndarray, path: Path, kind: str) -> torch.Tensor:
    """Integer labels 0 .. C-1 as int64, C at most MAX_CLASSES (a label of 10**9 would build a model of 10**9
    outputs); the bad value is printed as stored, never wrapped by a cast."""
    if not np.issubdtype(y.dtype, np.integer):
        raise AttrobustError(f"wrong {kind} layout: {path} has labels of dtype {y.dtype}; expected integers "
                             f"0 .. C-1")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise AttrobustError(f"wrong {kind} layout: {path} has the label {bad}; labels must be class numbers "
                             f"0 .. C-1 (C at most {MAX_CLASSES:,})")
    return torch.from_numpy(y.astype(np.int64))
