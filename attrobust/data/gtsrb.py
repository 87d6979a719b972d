"""GTSRB (Stallkamp et al.), 43 classes of German traffic signs, resized to `size` x `size` RGB.

Two on-disk layouts under `<root>/gtsrb/`:
- `torchvision` (the official archives, as `torchvision.datasets.GTSRB` downloads and reads them):
  `GTSRB/Training/000NN/*.ppm` (39,209 images; the folder number is the class) and `GTSRB/Final_Test/Images/*.ppm`
  with labels in `GT-final_test.csv` (12,630 images). Each image is resized whole (PIL Lanczos).
- `pickle`: the 32x32 pickles the RAR reference trained on (`train.p` 34,799 and `test.p` 12,630 images, dicts with
  `features` uint8 (N, 32, 32, 3) and `labels`; `valid.p` is not used, as in the reference). Only 32x32. They are
  read by a restricted unpickler that admits numpy arrays only (`safe_pickle`): a crafted pickle cannot run code.
`layout: auto` takes whichever is there (the official one first).

Reference preprocessing (`generate_data.py`, `gtsrb_input.py`), each an option: the training set grown to
`balance_per_class` images per class by random distortion (10,000 in the reference), then per-channel histogram
equalisation of every train and test image (`equalize`). Decoded and preprocessed tensors are cached per data root.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attrobust.data import DATASETS
from attrobust.data.base import ImageSet, Splits, class_labels
from attrobust.data.cache import SplitPair, cached_splits, source_fingerprint
from attrobust.data.decoded import DecodedDatasetSpec
from attrobust.data.safe_pickle import load_arrays
from attrobust.data.equalize import equalize_histograms
from attrobust.data.images import decode_labelled
from attrobust.errors import AttrobustError, choices

LOADER_VERSION = 1
LAYOUTS = ("auto", "torchvision", "pickle")
FETCH = "attrobust train dataset=gtsrb dataset.download=true"
PICKLES = ("train.p", "test.p")
PICKLES_SOURCE = ("as the reference's GTSRB/prepare_data.sh fetches it: https://d17h27t6h515a5.cloudfront.net/topher/"
                  "2017/February/5898cd6f_traffic-signs-data/traffic-signs-data.zip")


@DATASETS.register("gtsrb")
@dataclass(frozen=True)
class Gtsrb(DecodedDatasetSpec):
    layout: str = "auto"
    equalize: bool = False                 # reference: true (cv2.equalizeHist on each channel)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {choices(LAYOUTS)}, got '{self.layout}'")

    @property
    def base(self) -> Path:
        return Path(self.root) / "gtsrb"

    def load(self) -> Splits:
        if self.download:
            download_official(Path(self.root))
        layout = self._layout()
        sources = official_files(self.base) if layout == "torchvision" else pickle_files(self.base)
        recipe = {"loader": LOADER_VERSION, "layout": layout, "size": self.size, "equalize": self.equalize,
                  "balance_per_class": self.balance_per_class, "augment_seed": self.augment_seed,
                  "num_classes": self.num_classes, "source": source_fingerprint(self.base, sources)}
        train, test = cached_splits(self.base, "gtsrb", recipe, lambda: self._build(layout), self.cache,
                                   sources)
        return Splits("gtsrb", train, test, self.num_classes)

    def _layout(self) -> str:
        if self.layout == "pickle":
            missing = [name for name in PICKLES if not (self.base / name).is_file()]
            if missing:
                raise AttrobustError(
                    f"gtsrb pickle layout (dataset.layout=pickle, as in the rar_gtsrb_* presets): "
                    f"{' and '.join(missing)} not found in {self.base}; it needs train.p and test.p from the "
                    f"reference's traffic-signs-data.zip ({PICKLES_SOURCE}), or read the official archives with "
                    f"dataset.layout=torchvision (fetch them with: {FETCH} dataset.layout=torchvision)")
        if self.layout != "auto":
            return self.layout
        if (self.base / "GTSRB" / "Training").is_dir():
            return "torchvision"
        if (self.base / "train.p").is_file():
            return "pickle"
        raise AttrobustError(
            f"gtsrb not found: expected {self.base}/GTSRB/Training (official archives) or {self.base}/train.p and "
            f"test.p (the reference's pickles); fetch the official one with: {FETCH}")

    def _build(self, layout: str) -> SplitPair:
        if layout == "torchvision":
            samples = official_samples(self.base)
            classes = len({label for _, label in samples[0]})
            if classes != self.num_classes:
                raise AttrobustError(f"wrong number of classes: {self.base}/GTSRB/Training has {classes} class "
                                     f"folders but dataset.num_classes={self.num_classes}")
            size = (self.size, self.size)
            train, test = (decode_labelled(split, size, "RGB", self.workers) for split in samples)
        else:
            if self.size != 32:
                raise AttrobustError(f"the gtsrb pickles hold 32x32 images; dataset.size={self.size} needs the "
                                     f"official layout (dataset.layout=torchvision)")
            train, test = (read_pickle(self.base / name) for name in ("train.p", "test.p"))
        train = self.balanced(train)
        if self.equalize:
            train, test = (ImageSet(equalize_histograms(s.images), s.labels) for s in (train, test))
        return train, test


def download_official(root: Path) -> None:
    """Both official splits through torchvision (archives checked against their md5 sums)."""
    from torchvision.datasets import GTSRB

    try:
        for split in ("train", "test"):
            GTSRB(str(root), split=split, download=True)
    except (OSError, RuntimeError) as error:
        raise AttrobustError(f"could not download gtsrb into {root / 'gtsrb'}: {error}") from error


def official_files(base: Path) -> list[Path]:
    files = sorted((base / "GTSRB" / "Training").glob("*/*.ppm"))
    files += sorted((base / "GTSRB" / "Final_Test" / "Images").glob("*.ppm"))
    return files + [base / "GT-final_test.csv"] if (base / "GT-final_test.csv").is_file() else files


def pickle_files(base: Path) -> list[Path]:
    return [path for path in (base / name for name in PICKLES) if path.is_file()]


def official_samples(base: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(path, label) for the training folders (label = folder number) and the test CSV."""
    training = base / "GTSRB" / "Training"
    folders = sorted(path for path in training.iterdir() if path.is_dir())
    if not folders:
        raise AttrobustError(f"wrong gtsrb layout: {training} has no class folders (00000 .. 00042)")
    train = []
    for folder in folders:
        if not folder.name.isdigit():
            raise AttrobustError(f"wrong gtsrb layout: class folder {folder} is not a number like 00000")
        train += [(path, int(folder.name)) for path in sorted(folder.glob("*.ppm"))]
    if not train:
        raise AttrobustError(f"wrong gtsrb layout: no .ppm images in the class folders of {training}")
    annotations = base / "GT-final_test.csv"
    images = base / "GTSRB" / "Final_Test" / "Images"
    if not annotations.is_file() or not images.is_dir():
        raise AttrobustError(f"gtsrb test set not found: expected {images} and {annotations}; fetch it with: {FETCH}")
    with open(annotations, newline="") as handle:
        try:
            rows = list(csv.DictReader(handle, delimiter=";", skipinitialspace=True))
            test = [(images / plain_name(row["Filename"], annotations), int(row["ClassId"])) for row in rows]
        except (KeyError, ValueError, TypeError) as error:
            raise AttrobustError(f"wrong gtsrb layout: {annotations} needs ';'-separated columns Filename and "
                                 f"ClassId ({error})") from error
    missing = [str(path) for path, _ in test if not path.is_file()]
    if missing:
        raise AttrobustError(f"wrong gtsrb layout: {len(missing)} test image(s) listed in {annotations} are "
                             f"missing, e.g. {missing[0]}")
    return train, test


def plain_name(name: str, listed_in: Path) -> str:
    """A file name of the test folder as the CSV lists it: no folder part, so no row can name a file elsewhere."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise AttrobustError(f"wrong gtsrb layout: {listed_in} lists the test image {name!r}, which is not a plain "
                             f"file name of {listed_in.parent / 'GTSRB/Final_Test/Images'}; fix that row")
    return name


def read_pickle(path: Path) -> ImageSet:
    """One of the reference's GTSRB pickles (a dict with `features` (N, 32, 32, 3) uint8 and `labels`)."""
    if not path.is_file():
        raise AttrobustError(f"gtsrb pickle {path} not found (the pickle layout needs train.p and test.p)")
    content: Any = load_arrays(path, "gtsrb pickle")  # numpy arrays only: a pickle can run code
    if not isinstance(content, dict) or not {"features", "labels"} <= set(content):
        raise AttrobustError(f"corrupt gtsrb pickle {path}: expected a dict with 'features' and 'labels', got "
                             f"{type(content).__name__}")
    features, labels = np.asarray(content["features"]), np.asarray(content["labels"])
    if features.dtype != np.uint8 or features.ndim != 4 or features.shape[1:] != (32, 32, 3):
        raise AttrobustError(f"wrong gtsrb layout: {path} holds features {features.dtype} {features.shape}, "
                             f"expected uint8 (N, 32, 32, 3)")
    if labels.shape != (len(features),):
        raise AttrobustError(f"wrong gtsrb layout: {path} has {labels.shape} labels for {len(features)} images")
    images = torch.from_numpy(np.ascontiguousarray(features)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, class_labels(labels, path, "gtsrb"))
