"""Your own images in an ImageFolder-style tree: `<path>/train/<class>/*.png|jpg|...` and `<path>/test/<class>/...`.

Classes are the folder names of `train/`, sorted (class i is the i-th name); `test/` may hold a subset of them.
Every image is converted to RGB (`channels: 3`) or grey (`channels: 1`) and resized to `size` (height, width) with
PIL's Lanczos filter. Decoded tensors are cached in `<path>/.attrobust_cache` (invalidated when a file changes).
A class folder or image that is a symbolic link to a place outside `<path>` is refused (a received data folder could
otherwise read any file of this machine into the data set) unless `follow_links: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from attrobust.data import DATASETS
from attrobust.data.base import DatasetSpec, ImageSet, Splits
from attrobust.data.cache import cached_splits, source_fingerprint
from attrobust.data.images import decode_labelled
from attrobust.errors import AttrobustError

LOADER_VERSION = 1
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


@DATASETS.register("folder")
@dataclass(frozen=True)
class ImageFolderData(DatasetSpec):
    infers_classes = True

    path: str
    size: tuple[int, int] = (32, 32)
    channels: int = 3
    cache: bool = True
    workers: int = 0
    follow_links: bool = False  # read class folders and images that are links to places outside `path`

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f"size must be [height, width] with positive sides, got {list(self.size)}")

    def load(self) -> Splits:
        root = Path(self.path)
        classes = class_names(root / "train")
        if not self.follow_links:
            check_inside(root, [root / split / name for split in ("train", "test") for name in classes])
        if self.num_classes is not None and len(classes) != self.num_classes:
            raise AttrobustError(f"wrong number of classes: {root / 'train'} has {len(classes)} class folders but "
                                 f"dataset.num_classes={self.num_classes} (null counts them)")
        train_files, test_files = (split_files(root / split, classes) for split in ("train", "test"))
        if not self.follow_links:
            check_inside(root, [path for path, _ in train_files + test_files])
        empty = [name for label, name in enumerate(classes) if not any(y == label for _, y in train_files)]
        if empty:
            raise AttrobustError(f"wrong folder layout: class folder(s) {', '.join(empty)} in {root / 'train'} hold no "
                                 f"images; a class without training images cannot be learnt: add images or remove "
                                 f"the folder")
        recipe = {"loader": LOADER_VERSION, "size": list(self.size), "channels": self.channels, "classes": classes,
                  "source": source_fingerprint(root, [path for path, _ in train_files + test_files])}

        def build() -> tuple[ImageSet, ImageSet]:
            mode = "RGB" if self.channels == 3 else "L"
            return (decode_labelled(train_files, self.size, mode, self.workers),
                    decode_labelled(test_files, self.size, mode, self.workers))

        train, test = cached_splits(root, "folder", recipe, build, self.cache,
                                   [path for path, _ in train_files + test_files])
        return Splits(f"folder:{root.name}", train, test, len(classes))


def check_inside(root: Path, paths: list[Path]) -> None:
    """Each path, links resolved, lies inside `root` (one line naming the first that does not)."""
    inside = root.resolve()
    for path in paths:
        if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(inside):
            raise AttrobustError(f"{path} is a link to {path.resolve()}, outside the data folder {root}; attrobust "
                                 f"reads only the data folder's own files: copy the images in, or pass "
                                 f"dataset.follow_links=true if you trust that link")


def class_names(train: Path) -> list[str]:
    if not train.is_dir():
        raise AttrobustError(f"folder dataset not found: expected {train}/<class>/<image> and "
                             f"{train.parent / 'test'}/<class>/<image>; set dataset.path=DIR")
    names = sorted(path.name for path in train.iterdir() if path.is_dir() and not path.name.startswith("."))
    if len(names) < 2:
        raise AttrobustError(f"wrong folder layout: {train} needs one sub-folder per class (at least 2), "
                             f"found {len(names)}")
    return names


def split_files(split: Path, classes: list[str]) -> list[tuple[Path, int]]:
    if not split.is_dir():
        raise AttrobustError(f"wrong folder layout: {split} is missing (train/ and test/ are both needed)")
    unknown = sorted(path.name for path in split.iterdir()
                     if path.is_dir() and not path.name.startswith(".") and path.name not in classes)
    if unknown:
        raise AttrobustError(f"wrong folder layout: {split} has class folder(s) {', '.join(unknown)} that train/ "
                             f"does not have")
    files = [(path, label) for label, name in enumerate(classes) if (split / name).is_dir()
             for path in sorted((split / name).iterdir()) if path.suffix.lower() in EXTENSIONS]
    if not files:
        raise AttrobustError(f"the {split.name} split is empty: no images ({', '.join(EXTENSIONS)}) in "
                             f"{split}/<class>/")
    return files
