"""The evaluation experience: chosen test images, resumable attacks (SIGKILL, SIGTERM), the robust protocol, figures
of the most / median / least changed images, and `explain`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_RUN, wait_for

from attrobust.data.base import ImageSet
from attrobust.engine.evaluate import EvalSettings
from attrobust.engine.examples import figure_rows
from attrobust.engine.selection import choose_images
from attrobust.errors import AttrobustError
from attrobust.metrics import build_metrics

RUN = "hydra.run.dir=run"
# An attack that takes a few seconds in 2-image chunks, with random starts (so each chunk draws random numbers)
SLOW_ATTACK = ["attack.steps=30", "explainer.steps=8", "attack.restarts=2", "attack.random_start=true",
               "eval.num_examples=16", "eval.attribution_batch_size=2", "eval.metrics=[topk_intersection,kendall]",
               "eval.baselines=[]"]


def test_images_are_chosen_by_index_class_and_seeded_sample():
    data = ImageSet(torch.zeros(20, 1, 4, 4, dtype=torch.uint8), torch.arange(20) % 5)
    pick = lambda seed=0, **kw: choose_images(data, EvalSettings(8, ("kendall",), (), **kw), 5, seed)  # noqa: E731
    assert pick(indices=(7, 3, 7)).index.tolist() == [7, 3]
    assert pick(classes=(2,)).index.tolist() == [2, 7, 12, 17]
    assert pick(indices=(1, 2, 3, 7), classes=(2,)).index.tolist() == [2, 7]
    sample = pick(sample=6).index.tolist()
    assert sample == pick(sample=6).index.tolist() and sample == sorted(sample) and len(set(sample)) == 6
    assert sample != pick(seed=1, sample=6).index.tolist()
    assert pick(classes=(1,), num_examples=2).index.tolist() == [1, 6]
    assert pick(classes=(1,), num_examples=2).select(torch.tensor([1])).index.tolist() == [6]  # ids survive
    for settings, message in [({"indices": (20,)}, r"eval.indices: \[20\] not among the 20 test images"),
                              ({"classes": (5,)}, r"eval.classes: \[5\] not among the 5 classes"),
                              ({"classes": (1,), "sample": 5}, r"eval.sample=5 is more than the 4 selected")]:
        with pytest.raises(AttrobustError, match=message):
            pick(**settings)


def test_figures_show_the_most_median_and_least_changed_or_the_chosen_images():
    per_image = pd.DataFrame({"index": [10, 11, 12, 13, 14, 15], "qualified": [1, 1, 0, 1, 1, 1],
                              "kendall": [0.5, 0.1, 1.0, 0.9, 0.3, 0.7], "center_shift": [1, 5, 0, 2, 3, 4]})
    kendall, shift = build_metrics(["kendall", "center_shift"])
    assert figure_rows(per_image, kendall, "changed", 3) == [1, 0, 3]  # lowest tau first; the unmoved row 2 left out
    assert figure_rows(per_image, shift, "changed", 2) == [1, 0]       # a larger shift is a larger change
    assert figure_rows(per_image, kendall, "first", 2) == [0, 1]
    assert figure_rows(per_image, kendall, [14, 99, 10], 3) == [4, 0]  # 99 was not scored: left out
    assert figure_rows(per_image, kendall, "changed", 0) == []


def attack(run_dir: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attrobust", "attack", "checkpoint=run", *SLOW_ATTACK, *extra,
                             f"hydra.run.dir={run_dir}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.processes
def test_a_killed_attack_resumes_to_the_rows_of_an_uninterrupted_run(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    straight = attack(tmp_path / "a", tmp_path)
    assert straight.wait() == 0, straight.communicate()
    killed = attack(tmp_path / "b", tmp_path)
    wait_for(tmp_path / "b" / "measures.parts" / "topk" / "2.csv", killed)  # two chunks done
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "b" / "measures.csv").exists()
    done = sum(len(pd.read_csv(part)) for part in (tmp_path / "b" / "measures.parts" / "topk").glob("*.csv"))
    rerun = attack(tmp_path / "b", tmp_path)
    stdout, stderr = rerun.communicate()
    assert rerun.returncode == 0, stderr
    assert f"resuming topk: {done} of" in stdout + stderr
    straight_rows, resumed_rows = (pd.read_csv(tmp_path / run / "measures.csv") for run in ("a", "b"))
    assert len(straight_rows) > done
    pd.testing.assert_frame_equal(resumed_rows, straight_rows, check_exact=True)
    assert (tmp_path / "b" / "measures.csv").read_text() == (tmp_path / "a" / "measures.csv").read_text()
    assert not (tmp_path / "b" / "measures.parts").exists()

    stopped = attack(tmp_path / "c", tmp_path)  # SIGTERM: the chunk under way finishes, then one line
    wait_for(tmp_path / "c" / "measures.parts" / "topk" / "0.csv", stopped)
    stopped.send_signal(signal.SIGTERM)
    _, stderr = stopped.communicate()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert stopped.returncode == 2 and len(errors) == 1, stderr
    assert "stopped by SIGTERM after" in errors[0] and "to resume" in errors[0]
    assert (tmp_path / "c" / "failed.txt").is_file() and any((tmp_path / "c" / "measures.parts" / "topk").glob("*"))
    # other settings must not take these chunks up (a refusal before any work: in this process)
    other = cli("attack", "checkpoint=run", *SLOW_ATTACK, "attack.steps=24", f"hydra.run.dir={tmp_path / 'c'}")
    assert other.exit_code == 2 and "holds the unfinished measures of another evaluation" in other.stderr


def test_the_robust_protocol_starts_at_random_and_adds_lens_and_fast_spends_fewer_passes(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("attack", "checkpoint=run", "eval.protocol=robust", "eval.num_examples=6", "attack.steps=2",
                 "explainer.steps=4", "attack.restarts=2", "eval.metrics=[kendall]", "hydra.run.dir=robust")
    assert result.exit_code == 0, result.stderr
    rows = pd.read_csv(tmp_path / "robust" / "results.csv")
    assert {"kendall", "kendall_strict", "lens_recall", "lens_recall_strict"} <= set(rows["metric"])
    assert rows["attack"].str.contains("random-start worst of 2 restarts").all()
    fast = cli("attack", "checkpoint=run", "eval.protocol=fast", "eval.num_examples=6", "attack.steps=4",
               "explainer.steps=10", "attack.restarts=3", "eval.metrics=[kendall]", "hydra.run.dir=fast")
    assert fast.exit_code == 0, fast.stderr
    assert ("eval.protocol=fast: attribution_attack runs with random_start=True, restarts=2, steps=2, step_size=0.02, "
            "direction_points=2, selection_points=2") in (tmp_path / "fast" / "attack.log").read_text()
    described = pd.read_csv(tmp_path / "fast" / "results.csv")["attack"]
    assert described.str.contains(" 2x0.02 .* worst of 2 restarts").all()
    assert described[described.str.startswith("topk")].str.contains("direction ig.2. selection ig.2.").all()
    bad = cli("attack", "checkpoint=run", "eval.protocol=strong")
    assert bad.exit_code == 2
    assert "eval.protocol must be one of reference, robust, fast, got 'strong'" in bad.error_lines[0]


def test_explain_writes_the_maps_of_chosen_images(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("explain", "checkpoint=run", "explainer=gradient", "eval.indices=[5,0,9]", "hydra.run.dir=maps")
    assert result.exit_code == 0, result.stderr
    maps = torch.load(tmp_path / "maps" / "maps.pt", weights_only=True)
    assert maps["index"].tolist() == [5, 0, 9] and maps["attributions"].shape == (3, 1, 28, 28)
    assert maps["saliency"].shape == (3, 28, 28)
    torch.testing.assert_close(maps["saliency"].sum((1, 2)), torch.full((3,), 28.0 * 28))  # pixel mean 1
    assert (tmp_path / "maps" / "maps.png").read_bytes()[:4] == b"\x89PNG"
    first = cli("explain", "checkpoint=run", "hydra.run.dir=first")  # no selection: the first figure_examples
    assert first.exit_code == 0, first.stderr
    assert torch.load(tmp_path / "first" / "maps.pt", weights_only=True)["index"].tolist() == list(range(8))
    sampled = cli("explain", "checkpoint=run", "eval.sample=12", "hydra.run.dir=sampled")  # a selection is whole
    assert sampled.exit_code == 0, sampled.stderr
    assert len(torch.load(tmp_path / "sampled" / "maps.pt", weights_only=True)["index"]) == 12
    bad = cli("explain", "checkpoint=run", "eval.classes=[12]", "hydra.run.dir=bad")
    assert bad.exit_code == 2 and "eval.classes: [12] not among the 10 classes" in bad.error_lines[0]
    assert {p.name for p in (tmp_path / "bad").iterdir()} == {"failed.txt"}  # a named folder keeps only that
    nothing = cli("explain", "checkpoint=run", "figure_examples=0", "hydra.run.dir=nothing")
    assert nothing.exit_code == 2 and "figure_examples=0 with no images chosen" in nothing.error_lines[0]
    unshown = cli("explain", "checkpoint=run", "figure_examples=0", "eval.indices=[1]", "hydra.run.dir=unshown")
    assert unshown.exit_code == 0 and not (tmp_path / "unshown" / "maps.png").exists(), unshown.stderr


def test_test_accuracy_every_n_epochs_is_the_natural_accuracy_of_the_evaluation(cli, tmp_path):
    result = cli("train", *TINY_RUN, "train.epochs=3", "train.test_every=2", RUN)
    assert result.exit_code == 0, result.stderr
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert log["test_acc"].isna().tolist() == [True, False, True]  # after epoch 2 only
    rows = pd.read_csv(tmp_path / "run" / "results.csv")
    assert 0 <= log["test_acc"].iloc[1] <= 1 and rows["metric"].eq("natural_accuracy").any()
    same = cli("train", *TINY_RUN, "train.epochs=2", "train.test_every=1", "hydra.run.dir=two")
    assert same.exit_code == 0, same.stderr
    natural = pd.read_csv(tmp_path / "two" / "results.csv").set_index("metric").loc["natural_accuracy", "value"]
    assert pd.read_csv(tmp_path / "two" / "train_log.csv")["test_acc"].iloc[-1] == pytest.approx(natural / 100)
    never = cli("train", *TINY_RUN, "train.test_every=5", "eval_at_end=false", "hydra.run.dir=never")
    assert never.exit_code == 0
    assert "train.test_every=5 is longer than the run's 1 epoch(s)" in (tmp_path / "never" / "train.log").read_text()
    bad = cli("train", *TINY_RUN, "train.test_every=0", "hydra.run.dir=bad")
    assert bad.exit_code == 2 and "'train' settings: test_every must be a positive number" in bad.error_lines[0]
