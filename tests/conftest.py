"""Shared fixtures: the CLI driven in-process, tiny models, tiny IDX datasets in torchvision's on-disk layout."""

from __future__ import annotations

import gzip
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from attrobust.cli import app

# The fields every dataset config has (as conf/dataset/mnist_mini.yaml), for building datasets directly.
DATASET_FIELDS = {"num_classes": 10, "mean": [0.0], "std": [1.0]}

# Settings that make a CLI training run take about a second on a CPU.
TINY_RUN = ["model=small_cnn", "train.epochs=1", "train.num_examples=100", "train.batch_size=50",
            "eval.num_examples=50", "threat.pgd.steps=2"]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run `attrobust ARGS...` in-process with the working directory set to a fresh tmp dir."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> CliResult:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def write_idx_images(path: Path, images: np.ndarray, compress: bool) -> None:
    """IDX3 (magic 2051, big-endian sizes, then uint8 pixels), as in the MNIST distribution."""
    payload = struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes()
    _write(path, payload, compress)


def write_idx_labels(path: Path, labels: np.ndarray, compress: bool) -> None:
    payload = struct.pack(">II", 2049, labels.shape[0]) + labels.astype(np.uint8).tobytes()
    _write(path, payload, compress)


def _write(path: Path, payload: bytes, compress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_idx_dataset(root: Path, folder: str, n_train: int = 60, n_test: int = 20, compress: bool = True,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write `<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`; returns train images, labels."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    out = None
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
        if prefix == "train":
            out = (images, labels)
    assert out is not None
    return out


class TinyNet(nn.Module):
    """A small conv net with ReLU modules, for fast engine and attack tests."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 120, poll_s: float = 0.02) -> None:
    """Wait until a running command writes `path` (it must not exit first)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(poll_s)


class CountedModel(torch.nn.Module):
    """A model that counts the rows of its forward passes outside explainer calls (see CountedExplainer)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.rows, self.counting = model, 0, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x) if self.counting else 0
        return self.model(x)


class CountedExplainer:
    """An explainer proxy that counts the rows it explains; the model's passes inside it are the explainer's."""

    def __init__(self, explainer, model: CountedModel) -> None:
        self.explainer, self.model, self.rows = explainer, model, 0

    def explain(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        self.model.counting = False
        try:
            return self.explainer.explain(model, x, y)
        finally:
            self.model.counting = True
