"""Tiny datasets written in each dataset's real on-disk format (nothing can be downloaded here)."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def _random_image(rng: np.random.Generator, height: int, width: int, label: int) -> np.ndarray:
    """A noisy image whose mean colour depends on the label (so a model can learn something)."""
    base = np.array([40 + 60 * (label % 3), 40 + 50 * (label % 4), 200 - 40 * (label % 5)], dtype=np.int32)
    noise = rng.integers(-40, 40, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_gtsrb_official(root: Path, classes: int = 3, per_class: int = 4, test: int = 6, seed: int = 0) -> None:
    """`<root>/gtsrb/GTSRB/Training/000NN/*.ppm` + GT-000NN.csv and `Final_Test/Images/*.ppm` + GT-final_test.csv,
    as in GTSRB-Training_fixed.zip / GTSRB_Final_Test_Images.zip / GTSRB_Final_Test_GT.zip (images of varying size)."""
    rng = np.random.default_rng(seed)
    base = root / "gtsrb"
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    for label in range(classes):
        folder = base / "GTSRB" / "Training" / f"{label:05d}"
        folder.mkdir(parents=True)
        rows = [header]
        for index in range(per_class):
            height, width = rng.integers(29, 45, size=2)
            name = f"{index // 2:05d}_{index % 2:05d}.ppm"
            Image.fromarray(_random_image(rng, height, width, label)).save(folder / name)
            rows.append(f"{name};{width};{height};5;5;{width - 5};{height - 5};{label}")
        (folder / f"GT-{label:05d}.csv").write_text("\n".join(rows) + "\n")
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = [header]
    for index in range(test):
        label = index % classes
        height, width = rng.integers(29, 45, size=2)
        name = f"{index:05d}.ppm"
        Image.fromarray(_random_image(rng, height, width, label)).save(images / name)
        rows.append(f"{name};{width};{height};5;5;{width - 5};{height - 5};{label}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def make_gtsrb_pickles(root: Path, classes: int = 3, train: int = 12, test: int = 6,
                       seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """`<root>/gtsrb/{train,valid,test}.p`: dicts with features (N, 32, 32, 3) uint8, labels, sizes, coords."""
    rng = np.random.default_rng(seed)
    base = root / "gtsrb"
    base.mkdir(parents=True)
    splits = {}
    for name, n in (("train", train), ("valid", 3), ("test", test)):
        labels = np.arange(n) % classes
        features = np.stack([_random_image(rng, 32, 32, label) for label in labels])
        content = {"features": features, "labels": labels.astype(np.uint8),
                   "sizes": np.full((n, 2), 32), "coords": np.zeros((n, 4))}
        with open(base / f"{name}.p", "wb") as handle:
            pickle.dump(content, handle)
        splits[name] = content
    return splits


def make_flower17(root: Path, classes: int = 2, size: int = 24, archive: bool = False, seed: int = 0) -> Path:
    """`<root>/17flowers/jpg/image_0001.jpg ..` (80 per class, in class order), or only `17flowers.tgz` holding
    `jpg/` as the official archive does. Returns the folder or the archive."""
    rng = np.random.default_rng(seed)
    base = root / "17flowers"
    folder = base / ("staging" if archive else "") / "jpg"
    folder.mkdir(parents=True)
    for index in range(classes * 80):
        Image.fromarray(_random_image(rng, size, size + 3, index // 80)).save(folder / f"image_{index + 1:04d}.jpg")
    (folder / "files.txt").write_text("\n".join(f"image_{i + 1:04d}.jpg" for i in range(classes * 80)))
    if not archive:
        return folder
    path = base / "17flowers.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="jpg")
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    folder.parent.rmdir()
    return path


def make_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "emu"), per_class: int = 4,
                      seed: int = 0) -> Path:
    """`<root>/train/<class>/*.png` and `<root>/test/<class>/*.jpg` (mixed sizes and formats)."""
    rng = np.random.default_rng(seed)
    for split, n, suffix in (("train", per_class, ".png"), ("test", 2, ".jpg")):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(n):
                Image.fromarray(_random_image(rng, 20 + index, 30, label)).save(folder / f"{index}{suffix}")
    return root


def make_npz(root: Path, layout: str = "nhwc", n_train: int = 12, n_test: int = 6, classes: int = 3,
             seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % classes
        x = np.stack([_random_image(rng, 16, 16, label) for label in labels])
        if layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        elif layout == "float":
            x = x.astype(np.float32) / 255.0
        np.savez(root / f"{split}.npz", x=x, y=labels)
    return root
