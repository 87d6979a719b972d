"""Data loaders: the embedded mnist_mini, and MNIST/Fashion-MNIST on IDX fixtures in torchvision's layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from attrobust.data import DATASETS, ImageSet, Splits
from attrobust.errors import AttrobustError
from conftest import DATASET_FIELDS, make_idx_dataset

SPEC = DATASET_FIELDS


def test_mnist_mini_has_the_documented_split():
    splits = DATASETS.build({"name": "mnist_mini", **SPEC}).load()
    assert splits.image_shape == (1, 28, 28)
    assert len(splits.train) == 4000 and len(splits.test) == 1000
    for data, per_class in ((splits.train, 400), (splits.test, 100)):
        assert torch.equal(torch.bincount(data.labels, minlength=10), torch.full((10,), per_class))
        assert data.images.dtype == torch.uint8 and int(data.images.max()) == 255
        assert data.labels[:10].tolist() == list(range(10))  # interleaved: any first N images are balanced
    # real digits: most pixels are black, a digit covers roughly 100-200 of 784 pixels
    nonzero = (splits.train.images > 0).flatten(1).sum(1).float()
    assert 80 < nonzero.mean() < 250


def test_batches_are_float_in_unit_range():
    splits = DATASETS.build({"name": "mnist_mini", **SPEC}).load()
    x, y = splits.test.batch(slice(0, 32), torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (32, 1, 28, 28)
    assert x.min() >= 0 and x.max() <= 1 and y.dtype == torch.int64


def test_make_mnist_mini_split_rule():
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_mnist_mini.py"
    spec = importlib.util.spec_from_file_location("make_mnist_mini", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels = np.repeat(np.arange(10), 500)
    pixels = np.arange(5000)[:, None].repeat(784, axis=1) % 256
    arrays = module.split_by_class(pixels, labels)
    assert arrays["x_train"].shape == (4000, 28, 28) and arrays["x_test"].shape == (1000, 28, 28)
    # interleaved by class: train row 10*i + c is the i-th image of class c; test takes each class's last 100
    assert (arrays["x_train"][0::10, 0, 0] == np.arange(400) % 256).all()  # class 0, in file order
    assert (arrays["x_train"][3::10, 0, 0] == (1500 + np.arange(400)) % 256).all()
    assert (arrays["x_test"][0::10, 0, 0] == np.arange(400, 500) % 256).all()
    assert list(arrays["y_test"][:20]) == list(range(10)) * 2


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_loaders_read_torchvision_layout(tmp_path, name, folder, compress):
    images, labels = make_idx_dataset(tmp_path, folder, compress=compress)
    splits = DATASETS.build({"name": name, "root": str(tmp_path), **SPEC}).load()
    assert len(splits.train) == 60 and len(splits.test) == 20
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(images))
    assert torch.equal(splits.train.labels, torch.from_numpy(labels).long())
    assert splits.image_shape == (1, 28, 28)


def test_missing_idx_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(AttrobustError) as error:
        DATASETS.build({"name": "mnist", "root": str(tmp_path / "nowhere"), **SPEC}).load()
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "attrobust train dataset=mnist dataset.download=true" in message


def test_corrupt_idx_file_is_one_clear_error(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", compress=False)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(AttrobustError, match="corrupt mnist files"):
        DATASETS.build({"name": "mnist", "root": str(tmp_path), **SPEC}).load()


def test_corrupt_gz_leaves_no_partial_file(tmp_path):
    make_idx_dataset(tmp_path, "MNIST", compress=True)
    packed = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:50])
    with pytest.raises(AttrobustError, match="corrupt archive"):
        DATASETS.build({"name": "mnist", "root": str(tmp_path), **SPEC}).load()
    assert sorted(p.name for p in packed.parent.iterdir() if not p.name.endswith(".gz")) == []


def test_labels_beyond_num_classes_and_empty_splits_are_errors():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    good = ImageSet(images, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(AttrobustError, match="num_classes=3"):
        Splits("toy", good, good, num_classes=3)
    empty = ImageSet(images[:0], torch.zeros(0, dtype=torch.long))
    with pytest.raises(AttrobustError, match="test split is empty"):
        Splits("toy", good, empty, num_classes=4)
