"""`torchrun --nproc_per_node=2 -m attrobust train ...` with the gloo backend on CPU ends with the weights of a
single-process run (up to floating-point summation order), and only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from attrobust.engine.checkpoint import load_checkpoint

ARGS = ["model=small_cnn", "train.epochs=2", "train.num_examples=150", "train.batch_size=25", "eval.num_examples=50",
        "dataset.pgd.steps=2", "logger=csv"]


def run(prefix: list[str], run_dir: Path, extra: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*prefix, "-m", "attrobust", "train", *ARGS, *extra, f"hydra.run.dir={run_dir}"],
                          cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=300)


# natural (summed loss) and the input-gradient penalty (double backprop, mean loss). PGD-type objectives take the
# sign of input gradients, which turns summation-order noise into different steps, so they match only statistically.
@pytest.mark.processes
@pytest.mark.parametrize("extra", [["reg=natural"], ["reg=input_grad", "reg.weight=10", "reg.reduction=mean"]])
def test_two_gloo_processes_match_one(tmp_path, extra):
    single = run([sys.executable], tmp_path / "single", extra)
    assert single.returncode == 0, single.stderr
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
              tmp_path / "ddp", extra)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = (load_checkpoint(tmp_path / name / "model.pt")["model_state"] for name in ("single", "ddp"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=1e-3), key  # Adam amplifies float noise a little
    logs = [pd.read_csv(tmp_path / name / "train_log.csv").drop(columns="seconds") for name in ("single", "ddp")]
    pd.testing.assert_frame_equal(*logs, atol=1e-4)
    results = [pd.read_csv(tmp_path / name / "results.csv")["value"] for name in ("single", "ddp")]
    assert list(results[0]) == list(results[1])
    tracked = [pd.read_csv(tmp_path / name / "tracking" / "metrics.csv") for name in ("single", "ddp")]
    assert list(tracked[1]["name"]) == list(tracked[0]["name"])  # rank 0 alone tracks: each epoch's terms once
    assert list(tracked[1].query("name == 'train/ce'")["step"]) == [1, 2]
