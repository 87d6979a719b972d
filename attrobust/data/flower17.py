"""Flower-17 (Nilsback and Zisserman, Oxford VGG): 17 classes x 80 photos, resized to `size` x `size` RGB.

Files: `<root>/17flowers/jpg/image_0001.jpg .. image_1360.jpg` as the official archive `17flowers.tgz` unpacks;
images 80c+1 .. 80c+80 are class c (Daffodil, Snowdrop, ... Pansy). The archive itself in `<root>/17flowers/` is
unpacked on first use; `download: true` fetches it from the VGG site and checks its md5.

The split follows the RAR reference (`flower_input.py` via tflearn, then `generate_data.py`), not the official VGG
split files: the 1,360 images in a listing order (class folders sorted as strings, "0", "1", "10", ..., "9") are
permuted with numpy's legacy generator seeded with `split_seed` (4557077, the default of the reference's
`build_image_dataset_from_dir`), and the first `train_per_class` (72) images of each class in that order train, the
rest (8 per class) test: 1,224 / 136, each in permuted order. Resizing is PIL's Lanczos (`ANTIALIAS`), as in the
reference. The training set can be grown to `balance_per_class` images per class by the reference's random
distortions (1,000 in the paper).

A deliberate, documented difference (docs/fidelity.md): the reference lists the files inside each class folder in
`os.walk` order, which is the filesystem's directory order (hash order on ext4; other filesystems have their own), not
sorted. The permutation is applied to that listing, so which 136 images the reference tested on depends on the
machine that ran it and cannot be recovered from its code. attrobust lists each class's files sorted by name, a
deterministic order: the same seed, the same procedure, but not necessarily the reference's test images. Its label
numbers follow the same string order of the class folders, a relabelling that does not change any measure; here
class c is the c-th class of the official list.
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attrobust.data import DATASETS
from attrobust.data.archive import extract_regular_files
from attrobust.data.base import ImageSet, Splits
from attrobust.data.cache import SplitPair, cached_splits, source_fingerprint
from attrobust.data.decoded import DecodedDatasetSpec
from attrobust.data.images import decode_images
from attrobust.errors import AttrobustError

LOADER_VERSION = 1
IMAGES_PER_CLASS = 80
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
ARCHIVE = "17flowers.tgz"
ARCHIVE_MD5 = "b59a65d8d1a99cd66944d474e1289eab"
FETCH = "attrobust train dataset=flower17 dataset.download=true"


@DATASETS.register("flower17")
@dataclass(frozen=True)
class Flower17(DecodedDatasetSpec):
    size: int = 128
    split_seed: int = 4557077
    train_per_class: int = 72

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.train_per_class < IMAGES_PER_CLASS:
            raise ValueError(f"train_per_class must be in 1..{IMAGES_PER_CLASS - 1}, got {self.train_per_class}")

    @property
    def base(self) -> Path:
        return Path(self.root) / "17flowers"

    def load(self) -> Splits:
        files = self._image_files()
        recipe = {"loader": LOADER_VERSION, "size": self.size, "split_seed": self.split_seed,
                  "train_per_class": self.train_per_class, "balance_per_class": self.balance_per_class,
                  "augment_seed": self.augment_seed, "num_classes": self.num_classes,
                  "source": source_fingerprint(self.base, files)}
        train, test = cached_splits(self.base, "flower17", recipe, lambda: self._build(files), self.cache, files)
        return Splits("flower17", train, test, self.num_classes)

    def _image_files(self) -> list[Path]:
        folder = self.base / "jpg"
        if not folder.is_dir():
            archive = self.base / ARCHIVE
            if self.download and not archive.is_file():
                fetch_archive(self.base)
            if not archive.is_file():
                raise AttrobustError(f"flower17 not found: expected {folder}/image_0001.jpg .. image_"
                                     f"{self.expected_images:04d}.jpg or {archive}; fetch it with: {FETCH}")
            unpack(archive, self.base)
        names = [f"image_{index:04d}.jpg" for index in range(1, self.expected_images + 1)]
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise AttrobustError(f"wrong flower17 layout: {len(missing)} of {len(names)} images missing in {folder} "
                                 f"(e.g. {missing[0]}); {self.num_classes} classes x {IMAGES_PER_CLASS} images "
                                 f"image_0001.jpg .. image_{len(names):04d}.jpg expected")
        return [folder / name for name in names]

    @property
    def expected_images(self) -> int:
        return int(self.num_classes) * IMAGES_PER_CLASS

    def _build(self, files: list[Path]) -> SplitPair:
        train_index, test_index = reference_split(int(self.num_classes), self.split_seed, self.train_per_class)
        images = decode_images(files, (self.size, self.size), "RGB", self.workers)
        labels = torch.arange(len(files)) // IMAGES_PER_CLASS
        train = ImageSet(images[train_index], labels[train_index])
        test = ImageSet(images[test_index], labels[test_index])
        return self.balanced(train), test


def reference_split(num_classes: int, seed: int, train_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (into image_0001 .. in file order) of the train and test images, each in the reference's order."""
    class_order = sorted(range(num_classes), key=str)            # os.walk + sorted(): "0", "1", "10", ..., "9"
    # each class's files by name (the reference: os.walk's directory order, not recoverable; see the docstring)
    listing = np.concatenate([np.arange(c * IMAGES_PER_CLASS, (c + 1) * IMAGES_PER_CLASS) for c in class_order])
    shuffled = listing[np.random.RandomState(seed).permutation(len(listing))]
    classes = shuffled // IMAGES_PER_CLASS
    by_class = np.argsort(classes, kind="stable")                # positions grouped by class, in shuffled order
    rank_in_class = np.empty(len(shuffled), dtype=np.int64)
    rank_in_class[by_class] = np.arange(len(shuffled)) % IMAGES_PER_CLASS
    is_train = rank_in_class < train_per_class                   # the first `train_per_class` seen of each class
    return torch.from_numpy(shuffled[is_train]), torch.from_numpy(shuffled[~is_train])


def fetch_archive(base: Path) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(URL, str(base), ARCHIVE, md5=ARCHIVE_MD5)
    except (OSError, RuntimeError) as error:
        raise AttrobustError(f"could not download flower17 into {base}: {error}") from error


def unpack(archive: Path, base: Path) -> None:
    """Extract `jpg/` from the archive, atomically by renaming the folder; a link, an absolute path or a `..` under
    `jpg/` rejects the archive (`extract_regular_files`, on every supported Python)."""
    partial = base / ".jpg.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("jpg/") and not m.isdir()]
            if not members:
                raise AttrobustError(f"wrong flower17 layout: {archive} has no jpg/ folder")
            extract_regular_files(tar, members, partial, archive)
        (partial / "jpg").rename(base / "jpg")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise AttrobustError(f"corrupt flower17 archive {archive}: {error}") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
