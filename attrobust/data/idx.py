"""Shared loader for the IDX-format datasets read through torchvision (MNIST, Fashion-MNIST).

torchvision keeps the files in `<root>/<ClassName>/raw/` (e.g. `data/MNIST/raw/train-images-idx3-ubyte`). We
download only when asked, accept the `.gz` files as published (decompressing them once, atomically), and read the
uint8 tensors torchvision parses, without a per-image Python loop.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torchvision takes a second to import: only the loaders below need it
    from torchvision import datasets

from attrobust.data.base import ImageSet, Splits
from attrobust.errors import AttrobustError


def idx_file_names(cls: type[datasets.MNIST]) -> list[str]:
    """The four decompressed file names torchvision expects for this dataset class."""
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def load_idx_dataset(cls: type[datasets.MNIST], name: str, root: str, download: bool, num_classes: int) -> Splits:
    raw = Path(root) / cls.__name__ / "raw"
    if download:
        try:
            cls(root, train=True, download=True)
        except (OSError, RuntimeError) as error:
            raise AttrobustError(f"could not download {name} into {raw}: {error}") from error
    missing = [file for file in idx_file_names(cls) if not _ensure_decompressed(raw / file)]
    if missing:
        raise AttrobustError(
            f"{name} not found: expected {', '.join(missing)} in {raw}; "
            f"fetch it with: attrobust train dataset={name} dataset.download=true"
        )
    try:
        train, test = cls(root, train=True), cls(root, train=False)
    # torchvision's IDX reader asserts on a bad header, hence AssertionError
    except (OSError, RuntimeError, ValueError, IndexError, AssertionError) as error:
        reason = str(error) or "bad IDX header"
        raise AttrobustError(f"corrupt {name} files in {raw}: {reason}") from error
    return Splits(name, _image_set(train), _image_set(test), num_classes)


def _ensure_decompressed(path: Path) -> bool:
    """True when `path` exists, decompressing `path.gz` next to it first if only that is there."""
    if path.exists():
        return True
    packed = path.with_name(path.name + ".gz")
    if not packed.exists():
        return False
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(packed, "rb") as source, open(partial, "wb") as target:
            shutil.copyfileobj(source, target)
    except (OSError, EOFError) as error:
        partial.unlink(missing_ok=True)
        raise AttrobustError(f"corrupt archive {packed}: {error}") from error
    os.replace(partial, path)
    return True


def _image_set(split: datasets.MNIST) -> ImageSet:
    images = split.data
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise AttrobustError(f"unexpected image array {tuple(images.shape)} {images.dtype} in {split.raw_folder}")
    return ImageSet(images.unsqueeze(1).contiguous(), split.targets.to(torch.int64))
