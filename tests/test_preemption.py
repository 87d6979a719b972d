"""A training process killed with SIGKILL (no chance to save anything) and re-run in the same run dir ends with the
same weights and log as an uninterrupted run; SIGTERM makes it save its place and exit with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import wait_for

from attrobust.engine.checkpoint import load_checkpoint
from attrobust.rundir import LOCK_FILE

ARGS = ["model=small_cnn", "reg=pgd", "dataset.pgd.steps=2", "train.epochs=3", "train.num_examples=300",
        "train.batch_size=20", "eval_at_end=false"]


def train(run_dir: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attrobust", "train", *ARGS, *extra, f"hydra.run.dir={run_dir}"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.processes
def test_sigkill_then_rerun_ends_bitwise_like_an_uninterrupted_run(tmp_path):
    straight = train(tmp_path / "a", tmp_path)
    killed = train(tmp_path / "b", tmp_path)
    wait_for(tmp_path / "b" / "last.pt", killed)  # one epoch done
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "b" / "model.pt").exists()
    assert (tmp_path / "b" / LOCK_FILE).exists()  # left by the killed job: taken over by the re-run below
    assert straight.wait() == 0, straight.communicate()
    rerun = train(tmp_path / "b", tmp_path)
    stdout, stderr = rerun.communicate()
    assert rerun.returncode == 0, stderr
    assert "resuming from" in stdout + stderr and "took over the lock" in stdout + stderr
    assert not (tmp_path / "b" / LOCK_FILE).exists()
    a, b = (load_checkpoint(tmp_path / run / "model.pt")["model_state"] for run in ("a", "b"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    logs = [pd.read_csv(tmp_path / run / "train_log.csv").drop(columns="seconds") for run in ("a", "b")]
    pd.testing.assert_frame_equal(*logs)


def test_sigterm_saves_and_exits_with_one_line(tmp_path):
    process = train(tmp_path / "c", tmp_path)
    wait_for(tmp_path / "c" / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert process.returncode == 2 and len(errors) == 1, stderr
    assert "stopped by SIGTERM" in errors[0] and "run the same command again to resume" in errors[0]
    assert load_checkpoint(tmp_path / "c" / "last.pt")["epoch"] >= 1
    assert (tmp_path / "c" / "failed.txt").is_file()


@pytest.mark.processes
def test_a_second_job_in_a_held_folder_stops_with_one_line_and_changes_nothing(tmp_path):
    """seed 0 trains in d; seed 1 pointed at d while it runs stops at once, and d keeps seed 0's state and snapshot."""
    first = train(tmp_path / "d", tmp_path, "train.epochs=50")
    wait_for(tmp_path / "d" / "last.pt", first)
    second = train(tmp_path / "d", tmp_path, "seed=1")
    _, stderr = second.communicate()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 2 and len(errors) == 1, stderr
    assert f"run folder {tmp_path / 'd'} is in use by process {first.pid} on " in errors[0]
    assert first.poll() is None  # still training, undisturbed
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate()
    assert first.returncode == 2 and "stopped by SIGTERM" in stderr
    assert load_checkpoint(tmp_path / "d" / "last.pt")["seed"] == 0
    assert "seed=1" not in (tmp_path / "d" / ".hydra" / "overrides.yaml").read_text()
    assert "is in use" not in (tmp_path / "d" / "failed.txt").read_text()  # only the first job's own stop
    assert not (tmp_path / "d" / LOCK_FILE).exists()
