"""The explainability study (issue 30): the one command's orchestration with a stand-in CLI, and its report on real
evaluations of two tiny models, checked against the per-image files it reads."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_RUN

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# A stand-in for the CLI: it logs its arguments, and writes what the study looks for in hydra.run.dir
FAKE_CLI = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
for arg in "$@"; do case "$arg" in hydra.run.dir=*) out=${arg#hydra.run.dir=} ;; esac; done
mkdir -p "$out"
if [ "$1" = train ]; then
  [[ " $* " == *" model=${FAIL_ARCH:-none} "* ]] && exit 1
  touch "$out/model.pt"
else
  touch "$out/results.csv" "$out/evaluation.json"
fi
"""


def run_study(tmp_path: Path, expect: int = 0, **env: str) -> list[str]:
    (tmp_path / "bin").mkdir(exist_ok=True)
    cli = tmp_path / "bin" / "attrobust"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    settings = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "CALLS": str(calls), "STUDY": str(tmp_path / "s"),
                "PHASES": "train evaluate", "ALGOS": "natural trades", "ARCHS": "small_cnn vit",
                "EXPLAINERS": "gradient rise", "JOBS": "1", **env}
    done = subprocess.run(["bash", str(SCRIPTS / "explainability_study.sh")], env={**os.environ, **settings},
                          capture_output=True, text=True)
    assert done.returncode == expect, done.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_study_trains_every_model_evaluates_each_with_every_explainer_and_resumes(tmp_path):
    calls = run_study(tmp_path)
    trains = [c for c in calls if c.startswith("train")]
    assert len(trains) == 4 and any("+experiment=mnist_mini_trades model=vit optim.lr=5e-4" in c for c in trains)
    evaluations = [c for c in calls if c.startswith("evaluate")]
    for model in ("natural_small_cnn", "trades_small_cnn", "natural_vit", "trades_vit"):
        mine = [c for c in evaluations if f"runs/{model} " in c]
        names = sorted(c.split("explainer=")[1].split()[0] if "explainer=" in c else "ood" for c in mine)
        vit = ["attention_gradient", "attention_rollout"] if model.endswith("vit") else []
        assert names == sorted(["gradient", "rise", "ood", *vit])
    rise = next(c for c in evaluations if "explainer=rise" in c)
    assert "explainer.masks=300" in rise and "eval.faithfulness=[insertion,deletion]" in rise
    assert "eval.randomisation=[spearman]" in rise and "eval.num_examples=16" in rise
    assert run_study(tmp_path) == []  # everything there: nothing is run again


def test_a_model_that_fails_to_train_is_named_the_others_go_on_and_the_study_exits_non_zero(tmp_path):
    calls = run_study(tmp_path, expect=1, FAIL_ARCH="vit", ALGOS="natural")
    assert [c for c in calls if c.startswith("evaluate") and "runs/natural_vit" in c] == []
    assert sum(c.startswith("evaluate") and "runs/natural_small_cnn" in c for c in calls) == 3


def study_report():
    spec = importlib.util.spec_from_file_location("study_report", SCRIPTS / "study_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study_report"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_study_folder_with_whitespace_is_refused_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(SCRIPTS / "explainability_study.sh")], capture_output=True, text=True,
                          env={**os.environ, "STUDY": str(tmp_path / "my study"), "PHASES": "train"})
    assert done.returncode == 2 and done.stderr.strip() == (f"error: STUDY='{tmp_path / 'my study'}' holds "
                                                            "whitespace; choose a folder path without spaces")


CHEAP = ["eval.protocol=robust", "attribution_attack.steps=2", "attribution_attack.step_size=0.15",
         "attribution_attack.restarts=1", "attribution_attack.probes=2", "eval.faithfulness=[insertion,deletion]",
         "eval.randomisation=[spearman]", "eval.num_examples=6", "explainer.window=7", "explainer.stride=7"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    """Two tiny models (natural and PGD training), each evaluated like the study, with gradient and occlusion."""
    from typer.testing import CliRunner

    from attrobust.cli import app
    study = tmp_path_factory.mktemp("study")
    runner = CliRunner()

    def cli(*args: str) -> None:
        assert runner.invoke(app, list(args), catch_exceptions=False).exit_code == 0

    for algo in ("natural", "pgd"):
        run = study / "runs" / f"{algo}_small_cnn"
        cli("train", f"+experiment=mnist_mini_{algo}", *TINY_RUN, "eval_at_end=false", f"hydra.run.dir={run}")
        cli("evaluate", f"checkpoint={run}", "attributions=false", "eval.num_examples=20",
            "eval.corruptions=[contrast]", f"hydra.run.dir={run}/study/ood")
        for name in ("gradient", "gradcam", "occlusion"):
            settings = CHEAP if name == "occlusion" else CHEAP[:-2]
            cli("evaluate", f"checkpoint={run}", f"explainer={name}", *settings,
                f"hydra.run.dir={run}/study/{name}")
    return study


def test_the_report_s_numbers_are_the_per_image_files_means(tiny_study):
    report = study_report()
    study = report.load(tiny_study)
    r = report.resample(study, 50, 0)
    text, table = report.report(study, r)
    cells = table[table.table == "cells"].set_index(["model", "explainer"])
    folder = tiny_study / "runs" / "pgd_small_cnn" / "study" / "occlusion"
    faith = pd.read_csv(folder / "faithfulness.csv")
    row = cells.loc[("pgd_small_cnn", "occlusion")]
    assert row["insertion value"] == pytest.approx(faith.insertion.mean())
    assert row["insertion - deletion value"] == pytest.approx((faith.insertion - faith.deletion).mean())
    assert row["insertion low"] <= row["insertion value"] <= row["insertion high"]
    assert row["insertion n"] == faith.insertion.notna().sum() > 0
    measures = pd.read_csv(folder / "measures.csv")
    counted = measures[(measures.attack == "topk") & measures.qualified]
    assert row["IN attack (%) value"] == pytest.approx(100 * counted.topk_intersection.mean(), nan_ok=True)
    sanity = pd.read_csv(folder / "randomisation.csv")
    assert row["sanity (Spearman) value"] == pytest.approx(sanity.iloc[:, -1].mean())
    models = table[table.table == "models"].set_index("model")
    accuracy = pd.read_csv(tiny_study / "runs" / "natural_small_cnn" / "study" / "ood" / "accuracy.csv")
    assert models.loc["natural_small_cnn", "NA (%) value"] == pytest.approx(100 * accuracy.correct.mean())
    def errors(model: str) -> float:  # contrast's errors summed over its severities
        return float((1 - pd.read_csv(tiny_study / "runs" / model / "study" / "ood" / "corruption.csv")
                      .filter(like="contrast@").astype(float)).mean().sum())
    assert models.loc["pgd_small_cnn", "mCE vs natural (%) value"] == pytest.approx(
        100 * errors("pgd_small_cnn") / errors("natural_small_cnn"))
    assert row["family"] == "perturbation" and cells.loc[("pgd_small_cnn", "gradient"), "family"] == "gradient"
    for number in range(1, 6):
        assert f"### {number}. " in text
    # two models: every finding is not testable (too few models, no robust one, RISE not evaluated), said so
    assert text.count("**Not testable** here") == 5 and "**Holds**" not in text and "**Does not hold**" not in text
    assert "no adversarially trained model is 10 points of AA above" in text


def test_finding_1_pairs_the_robust_and_natural_models_on_the_same_images(tiny_study, monkeypatch):
    report = study_report()
    monkeypatch.setattr(report, "ROBUST_GAIN", -np.inf)  # count the tiny PGD model as robust
    study = report.load(tiny_study)
    r = report.resample(study, 50, 0)
    lines, table = report.finding_1(study, r, report.common_explainers(study))
    by_family = table.set_index("family")
    cells = study.cells.set_index(["model", "explainer", "index"]).explainability
    paired = cells.loc["pgd_small_cnn", "gradient"] - cells.loc["natural_small_cnn", "gradient"]  # shared images
    assert by_family.loc["gradient", "insertion - deletion"]["value"] == pytest.approx(paired.mean())
    assert by_family.loc["gradient", "insertion - deletion"]["n"] == paired.notna().sum()
    assert list(by_family.index) == ["gradient", "cam", "perturbation"]
    assert "pgd_small_cnn - natural_small_cnn" in "\n".join(lines)


def test_the_report_refuses_a_folder_without_models_and_names_missing_evaluations(tiny_study, tmp_path):
    script = str(SCRIPTS / "study_report.py")
    done = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "no runs folder; run scripts/explainability_study.sh" in done.stderr
    report = study_report()
    (tiny_study / "runs" / "natural_small_cnn" / "study" / "rise").mkdir()  # a run cut short: no results.csv
    try:
        assert "natural_small_cnn/rise" in report.load(tiny_study).missing
    finally:
        (tiny_study / "runs" / "natural_small_cnn" / "study" / "rise").rmdir()


def test_the_report_s_statistics_handle_missing_images_ties_and_too_few_models():
    report = study_report()
    a = np.array([[1.0, 2, 3, np.nan, 5], [1, 1, 1, 1, 1]])
    b = np.array([[2.0, 4, 5, 9, np.nan], [1, 2, 3, 4, 5]])
    rho = report.spearman_rows(a, b)
    assert rho[0] == pytest.approx(1.0) and np.isnan(rho[1])  # over the shared columns; no spread: undefined
    shares = report.best_shares(np.array([[0, 0, 0], [1, 1, 0], [2, 1, 2], [0, 5, 0]], dtype=float))
    assert shares == pytest.approx([(0.5 + 0.5 + 0) / 3, (0.5 + 0 + 1) / 3, (0 + 0.5 + 0) / 3])  # ties shared
    assert report.too_few(["a", "b", "c"]).startswith("**Not testable** here: a finding across models needs at "
                                                      "least 4 models")
