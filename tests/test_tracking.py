"""Experiment trackers (logger=...): a sweep of three training jobs and an evaluation logged to every registered
tracker at once, each read back by that tool's own reader (tests/tracker_readers.py); a tracker that is not installed,
or not known, is refused in one line before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from attrobust.cli import app
from attrobust.tracking import LOGGERS
from attrobust.tracking.base import metric_key
from conftest import TINY_RUN
from tracker_readers import READERS

TRACKERS = [name for name in LOGGERS.names()]
EVALUATION = ["eval.num_examples=4", "explainer=gradient", "attribution_attack.steps=2", "eval.baselines=[]",
              "eval.metrics=[kendall]", "eval.bootstrap=50", "figure_examples=1"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """A multirun of 3 training jobs and one evaluation of the first, each logged to every tracker."""
    workdir = tmp_path_factory.mktemp("tracked")
    chosen = f"logger=[{','.join(TRACKERS)}]"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            patch.setenv(variable, str(workdir / "wandb-home"))
        runner = CliRunner()
        swept = runner.invoke(app, ["train", "-m", *TINY_RUN, "train.epochs=2", "seed=0,1,2", chosen,
                                    "hydra.sweep.dir=sweep"], catch_exceptions=False)
        assert swept.exit_code == 0, swept.stderr
        jobs = sorted(path.parent for path in (workdir / "sweep").glob("*/model.pt"))
        evaluated = runner.invoke(app, ["evaluate", f"checkpoint={jobs[0]}", *EVALUATION, chosen,
                                        "hydra.run.dir=evaluation"], catch_exceptions=False)
        assert evaluated.exit_code == 0, evaluated.stderr
        untracked = runner.invoke(app, ["evaluate", f"checkpoint={jobs[0]}", *EVALUATION, "hydra.run.dir=untracked"],
                                  catch_exceptions=False)
        assert untracked.exit_code == 0, untracked.stderr
    return workdir, jobs, workdir / "evaluation"


def test_trackers_change_no_number_hash_or_fingerprint(logged):
    workdir, _, evaluation = logged
    untracked = workdir / "untracked"
    for name in ("accuracy.csv", "measures.csv", "table.csv"):
        assert (evaluation / name).read_bytes() == (untracked / name).read_bytes(), name
    assert pd.read_csv(evaluation / "results.csv").equals(pd.read_csv(untracked / "results.csv"))
    hashes = [json.loads((folder / "provenance.json").read_text())["config_hash"] for folder in (evaluation, untracked)]
    assert hashes[0] == hashes[1]
    fingerprints = [json.loads((folder / "evaluation.json").read_text())["fingerprint"]
                    for folder in (evaluation, untracked)]
    assert fingerprints[0] == fingerprints[1]
    snapshot = yaml.safe_load((evaluation / ".hydra" / "config.yaml").read_text())
    assert sorted(snapshot["logger"]) == TRACKERS  # the snapshot says where the run was logged
    assert snapshot["dataset"]["name"] == "mnist_mini"  # as the task completed it from the checkpoint


def test_every_registered_tracker_has_a_reader_and_a_yaml():
    assert sorted(READERS) == TRACKERS
    from attrobust.config import group_options

    assert group_options("logger") == sorted([*TRACKERS, "none"])


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_sweep_and_an_evaluation_are_read_back_by_the_tracker_s_own_reader(tracker, logged):
    workdir, jobs, evaluation = logged
    assert len(jobs) == 3
    runs = READERS[tracker]([*jobs, evaluation], workdir)
    assert [run.name for run in runs] == [path.name for path in [*jobs, evaluation]]  # 3 + 1 tracked runs
    for seed, (job, run) in enumerate(zip(jobs, runs)):
        assert run.finished
        assert run.params["reg.name"] == "natural" and float(run.params["seed"]) == seed
        assert run.params["provenance.commit"]
        if tracker != "tensorboard":  # TensorBoard has no groups: a sweep is the folder its runs share
            assert run.group == str(Path("sweep"))
        epochs = pd.read_csv(job / "train_log.csv")
        for term in ("ce", "acc", "lr"):
            logged_term = run.metrics[f"train/{term}"]
            assert sorted(logged_term) == [1, 2]
            assert [logged_term[step] for step in (1, 2)] == pytest.approx(epochs[term].tolist(), rel=1e-6)
        check_results(run, job, {"results.csv", "table.md", "train_log.csv"})
    assert runs[-1].params["explainer.name"] == "gradient" and runs[-1].finished
    check_results(runs[-1], evaluation, {"results.csv", "table.md", "figure.png"})


def check_results(run, folder: Path, files: set[str]) -> None:
    """Every row of the run's results.csv is a metric (value, interval, n) of the tracked run; its files are kept."""
    results = pd.read_csv(folder / "results.csv")
    assert len(results) >= 2
    for row in results.itertuples():
        key = metric_key(row.attack, row.metric)
        for suffix, value in (("", row.value), ("/low", row.low), ("/high", row.high), ("/n", row.n)):
            if pd.isna(value):  # a count (images scored) has no interval: none is logged
                assert key + suffix not in run.metrics
            else:
                assert list(run.metrics[key + suffix].values())[-1] == pytest.approx(value, rel=1e-6), key + suffix
    assert files <= run.artifacts, f"{files - run.artifacts} not kept"


@pytest.mark.parametrize("tracker", [name for name in TRACKERS if LOGGERS.get(name).package])
def test_a_tracker_that_is_not_installed_is_refused_in_one_line(tracker, cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    missing = LOGGERS.get(tracker).package
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    result = cli("train", *TINY_RUN, f"logger=[csv,{tracker}]")
    assert result.exit_code == 2
    assert result.error_lines == [f"error: logger={tracker} needs the '{missing}' package, which is not installed: "
                                  f"pip install 'attrobust[{LOGGERS.get(tracker).extra}]' (or choose logger=none)"]
    assert not Path("outputs").exists()  # refused before any work: nothing written


def test_an_unknown_tracker_is_refused_with_the_choices(cli):
    result = cli("train", *TINY_RUN, "logger=[csv,neptune]")
    assert result.exit_code == 2
    assert result.error_lines == ["error: unknown logger 'neptune'; choose one of: csv, mlflow, none, tensorboard, "
                                  "wandb"]
    assert not Path("outputs").exists() and not os.listdir(".")


def test_a_tracker_that_cannot_start_fails_the_job_in_one_line_and_closes_the_others(cli, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the database's folder would be")
    result = cli("train", *TINY_RUN, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri=sqlite:///{blocked}/db",
                 "hydra.run.dir=run")
    assert result.exit_code == 2
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith(
        "error: logger=mlflow could not start a tracked run: FileExistsError")
    assert (tmp_path / "run" / "tracking" / "status.txt").read_text() == "failed\n"  # the csv tracker, closed
    assert not (tmp_path / "run" / "model.pt").exists()  # before any training


def test_a_resumed_training_gives_its_tracked_run_every_epoch(cli, tmp_path):
    constant = "optim.schedule=constant"  # a rate that does not depend on the run's length: it can be extended
    first = cli("train", *TINY_RUN, constant, "train.keep_last=true", "logger=csv", "hydra.run.dir=run")
    assert first.exit_code == 0, first.stderr
    extended = cli("train", *TINY_RUN, constant, "train.epochs=2", "logger=csv", "hydra.run.dir=run")  # epoch 2
    assert extended.exit_code == 0, extended.stderr
    metrics = pd.read_csv(tmp_path / "run" / "tracking" / "metrics.csv")
    epochs = pd.read_csv(tmp_path / "run" / "train_log.csv")
    ce = metrics[metrics.name == "train/ce"]
    assert list(ce.step) == [1, 2] and list(ce.value) == pytest.approx(list(epochs.ce), rel=1e-9)
    natural = metrics[metrics.name.str.endswith("/natural_accuracy")]
    assert list(natural.step) == [2]  # the results at the last epoch
