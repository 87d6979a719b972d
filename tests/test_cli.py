"""The real commands, driven in-process through Typer on tiny data: runs, sweeps, Hydra flags and every bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import torch

from conftest import TINY_RUN, make_idx_dataset
from image_fixtures import make_image_folder

from attrobust.engine.checkpoint import load_checkpoint
from attrobust.explainers import EXPLAINERS

RUN = "hydra.run.dir=run"


def run_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_train_writes_checkpoints_logs_and_tables(cli, tmp_path):
    result = cli("train", *TINY_RUN, RUN)
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "run"
    assert {"model.pt", "train_log.csv", "results.csv", "table.csv", "table.md", ".hydra"} <= run_files(run)
    assert "last.pt" not in run_files(run)  # the training state goes once model.pt holds the result
    rows = pd.read_csv(run / "results.csv")
    assert set(rows["metric"]) == {"natural_accuracy", "adversarial_accuracy"}
    assert (rows["n"] == 50).all() and rows["value"].between(0, 100).all() and (rows["unit"] == "%").all()
    assert "NA (%)" in (run / "table.md").read_text()
    assert "NA (%)" in result.stdout  # the table is printed
    assert len(pd.read_csv(run / "train_log.csv")) == 1
    assert "estimated cost on cpu: 2 steps of about" in (run / "train.log").read_text()  # from the second step


def test_default_run_dir_is_under_outputs(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false").exit_code == 0
    (run,) = (tmp_path / "outputs" / "train").iterdir()
    assert run.name.endswith("_mnist_mini_natural_seed0") and (run / "model.pt").exists()


TINY_ATTRIBUTION = ["attribution_attack.steps=2", "explainer.steps=4"]


def test_evaluate_a_run_dir_writes_into_it(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=30", "attack.steps=1", "attributions=false")
    assert result.exit_code == 0, result.stderr
    (evaluation,) = (tmp_path / "run" / "evaluate").iterdir()
    rows = pd.read_csv(evaluation / "results.csv")
    assert set(rows["metric"]) == {"natural_accuracy", "adversarial_accuracy"}
    assert (rows["n"] == 30).all() and (rows["run_id"] == "run").all() and (rows["dataset"] == "mnist_mini").all()
    assert (evaluation / ".hydra" / "config.yaml").exists()


def test_evaluate_gives_the_papers_columns_and_the_random_baselines(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=8", "attack.steps=1", *TINY_ATTRIBUTION)
    assert result.exit_code == 0, result.stderr
    (evaluation,) = (tmp_path / "run" / "evaluate").iterdir()
    table = pd.read_csv(evaluation / "table.csv")
    assert len(table) == 3  # the attack and the two random baselines, NA and AA on each line
    assert {"NA (%)", "AA (%)", "IN (%)", "CO", "Spearman", "scored", "unqualified", "unmoved"} <= set(table.columns)
    assert [a.split("; ")[1].split()[0] for a in table["attack"]] == ["topk", "random_sign", "random_noise"]
    assert table["attack"].str.startswith("pgd").all() and table["NA (%)"].nunique() == 1
    measures = pd.read_csv(evaluation / "measures.csv")
    assert (measures.groupby("attack", sort=False).size() == table["scored"].to_numpy()).all()
    assert {"figure.png", "examples.pt"} <= run_files(evaluation) and "measures.parts" not in run_files(evaluation)
    separated = pd.read_csv(evaluation / "separation.csv")  # each measure against each control, on these images
    assert len(separated) == 2 * 4 and set(separated["control"]) == {"random_sign", "random_noise"}
    assert (separated["images"] == table["scored"][0]).all() and separated["auroc"].between(0, 1).all()
    shown = (evaluation / "table.md").read_text()  # a control is named exactly when some measure cannot tell it
    for control in ("random_sign", "random_noise"):
        flagged = not separated[separated["control"] == control]["separates"].all()
        assert (f"cannot tell topk from the random control {control}" in shown) == flagged
    one = cli("evaluate", "checkpoint=run", "eval.num_examples=8", "attack.steps=1", *TINY_ATTRIBUTION,
              "eval.baselines=[]", "hydra.run.dir=alone")
    assert one.exit_code == 0, one.stderr
    assert len(pd.read_csv(tmp_path / "alone" / "table.csv")) == 1


@pytest.mark.parametrize("name", ["topk", "random_sign", "mass_center", "target"])
def test_attack_command_writes_measures_examples_and_figure(cli, tmp_path, name):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("attack", "checkpoint=run", f"attack@attribution_attack={name}", "eval.num_examples=6",
                 "attribution_attack.steps=2", "explainer.steps=4", "attribution_attack.restarts=2")
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "run" / "attack").iterdir()
    assert folder.name.endswith(f"{name}_ig")
    measures = pd.read_csv(folder / "measures.csv")
    assert list(measures.columns)[:3] == ["index", "label", "qualified"]
    controls = ["random_noise"] if name == "random_sign" else ["random_sign", "random_noise"]  # beside its controls
    assert list(measures["attack"].unique()) == [name, *controls] and measures.groupby("attack").size().max() <= 6
    assert [a.split()[0] for a in pd.read_csv(folder / "table.csv")["attack"]] == [name, *controls]
    assert (measures["kendall"] <= 1).all() and measures["topk_intersection"].between(0, 1).all()
    assert {"results.csv", "table.md", "examples.pt", "figure.png"} <= run_files(folder)
    assert "measures.parts" not in run_files(folder)  # the chunks are gone once measures.csv is written
    assert (folder / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    examples = torch.load(folder / "examples.pt", weights_only=True)
    assert examples["draw_centers"] == (name == "mass_center") and (examples["region"] is None) == (name != "target")
    assert examples["original_top_k"].sum(1).eq(examples["k"]).all()
    exported = np.load(folder / "examples.npz", allow_pickle=False)  # the same images as plain arrays
    image, perturbed = exported["image"], exported["perturbed"]
    assert image.shape == perturbed.shape == (len(exported["index"]), 1, 28, 28)
    assert exported["original_map"].shape == exported["perturbed_top_k"].shape == (len(image), 28, 28)
    assert image.min() >= 0 and perturbed.max() <= 1 and np.abs(perturbed - image).max() <= exported["eps"] + 1e-6
    assert np.array_equal(exported["index"], examples["index"].numpy())
    rows = measures[measures.attack == name].set_index("index").loc[exported["index"]]
    np.testing.assert_allclose(exported["measure_kendall"], rows["kendall"])  # its per-image measures beside it


def test_attack_refuses_a_prediction_attack(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "eval_at_end=false").exit_code == 0
    result = cli("attack", "checkpoint=run", "attack=pgd")
    assert result.exit_code == 2 and "attacks predictions, not explanations" in result.error_lines[0]


def test_multirun_runs_every_job_with_its_table(cli, tmp_path):
    result = cli("train", "-m", "reg=natural,pgd", *TINY_RUN, "hydra.sweep.dir=sweep")
    assert result.exit_code == 0, result.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0_mnist_mini_natural_seed0", "1_mnist_mini_pgd_seed0"]
    for job in jobs:
        assert (tmp_path / "sweep" / job / "table.md").exists()
    report = cli("report", "sweep")
    assert report.exit_code == 0, report.stderr
    assert len(pd.read_csv(tmp_path / "sweep" / "report.csv")) == 2


def test_ig_norm_preset_trains_end_to_end(cli, tmp_path):
    result = cli("train", "+experiment=mnist_mini_ig_norm", "train.epochs=1", "train.num_examples=50",
                 "eval.num_examples=20", "attack.steps=1", "reg.steps=1", RUN)
    assert result.exit_code == 0, result.stderr
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert {"ce", "ig_l1", "acc", "acc_adv"} <= set(log.columns) and log["ig_l1"].iloc[0] > 0


def test_cfg_job_prints_the_config_and_runs_nothing(cli, tmp_path):
    result = cli("train", "reg=pgd", "--cfg", "job")
    assert result.exit_code == 0
    assert "name: pgd" in result.stdout and "eps: ${threat.eps}" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_user_config_dir_adds_options(cli, tmp_path):
    user = tmp_path / "myconf" / "dataset"
    user.mkdir(parents=True)
    (user / "mnist_mini_eps01.yaml").write_text(
        "# mnist_mini at eps 0.1\ndefaults:\n  - mnist_mini\n  - _self_\neps: 0.1\n")
    result = cli("train", "-cd", "myconf", "dataset=mnist_mini_eps01", "--cfg", "job")
    assert result.exit_code == 0, result.stderr
    assert "eps: 0.1" in result.stdout


def test_list_shows_every_group(cli):
    result = cli("list")
    assert result.exit_code == 0
    for name in ("mnist_mini", "fashion_mnist", "madry_cnn", "natural", "pgd", "adam", "topk", "random_sign",
                 "rar_mnist_ig_norm", "mnist_mini_ig_sum_norm", "smoothgrad", "gradcam", "lens_recall", "pearson"):
        assert name in result.stdout
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "test.p." in text  # the end of gtsrb's two-line description: descriptions are whole
    assert "[lipschitz]" in text and "[autoattack]" in text  # the install commands keep their extras (no markup)
    assert "(with ties, no Python loop)." in text  # a metric's description ends where its first paragraph does


@pytest.mark.parametrize("group", __import__("attrobust.listing", fromlist=["x"]).choices())
def test_list_group_shows_each_option_s_settings_with_defaults_and_help(group):
    from attrobust.listing import group_options, group_rows, measure_groups

    rows = group_rows(group)
    names = group_options(group) if group not in measure_groups() else measure_groups()[group].names()
    assert sorted({row[0] for row in rows}) == sorted(names)  # every option, from the configs or the registry
    assert all(len(row) == 4 for row in rows)


def test_list_group_reads_yaml_comments_included_files_and_dataclass_fields(cli):
    from attrobust.listing import complete_override, group_rows

    explainers = {(name, key): (value, help_) for name, key, value, help_ in group_rows("explainer")}
    assert explainers["rise", "masks"] == ("1000", "N masks (the paper: 4000 to 8000 on ImageNet)")
    attacks = {(name, key): value for name, key, value, _ in group_rows("attack")}
    assert attacks["topk", "restarts"] == "3"  # from _attribution.yaml, which topk includes
    metrics = {(name, key): (value, help_) for name, key, value, help_ in group_rows("metrics")}
    assert metrics["lens_recall", "window"][0] == "3"
    assert ("kendall", "") in metrics  # a measure without settings says so
    result = cli("list", "explainer")
    assert result.exit_code == 0 and "explainer=NAME explainer.SETTING=VALUE" in " ".join(result.stdout.split())
    result = cli("list", "nope")
    choices = __import__("attrobust.listing", fromlist=["x"]).choices()
    assert result.exit_code != 0 and result.error_lines == [
        f"error: list: unknown group 'nope'; choose one of: {', '.join(choices)}"]
    assert {"explainer", "experiment", "metrics", "corruptions"} <= set(choices)
    assert complete_override("da") == ["dataset="] and "explainer=rise" in complete_override("explainer=r")
    assert complete_override("+experiment=mnist_mini_p") == ["+experiment=mnist_mini_pgd"]


def test_shell_completion_proposes_groups_and_their_options():
    env = {**os.environ, "COMP_WORDS": "attrobust evaluate explainer=gradc", "COMP_CWORD": "2",
           "_ATTROBUST_COMPLETE": "complete_bash"}
    out = subprocess.run([sys.executable, "-m", "attrobust"], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["explainer=gradcam", "explainer=gradcam_pp"], out.stderr
    # Typer finds the shell among the command's parent processes: run it from bash, whatever started the tests
    script = subprocess.run(["bash", "-c", f"'{sys.executable}' -m attrobust --show-completion; exit $?"],
                            capture_output=True, text=True)
    assert "_ATTROBUST_COMPLETE=complete_bash" in script.stdout, script.stderr


def test_help_texts_keep_their_brackets():
    out = subprocess.run([sys.executable, "-m", "attrobust", "list", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert "eval.metrics=[name,...]" in out.stdout, out.stdout


def test_console_script_help():
    """The installed entry point (python -m attrobust) answers --help for each command."""
    for args in ([], ["train"], ["evaluate"], ["attack"], ["explain"]):
        out = subprocess.run([sys.executable, "-m", "attrobust", *args, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "Usage" in out.stdout


def test_help_loads_neither_torch_nor_hydra_nor_pandas():
    """What makes `attrobust --help` answer at once: the CLI module loads them only when a command runs."""
    code = ("import sys; from attrobust.cli import app; "
            "print(sorted(m for m in ('torch', 'hydra', 'pandas', 'omegaconf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


BAD_INPUTS = [
    (["dataset=mnits"], "unknown dataset 'mnits'; choose one of: fashion_mnist, flower17, folder, gtsrb, mnist, "
                        "mnist_mini, npz"),
    (["reg=ig_nrom"], "unknown reg 'ig_nrom'; choose one of: art, attribution_distance, erar, hkr, ig_norm, "
                      "ig_sum_norm, input_grad, natural, pgd, r2et"),
    (["-m", "reg=natural,pgdd"], "unknown reg 'pgdd'"),
    (["model=resnet"], "unknown model 'resnet'"),
    (["attack=tpok"], "unknown attack 'tpok'"),
    (["attack=topk"], "attack=topk attacks explanations, not predictions"),
    (["reg.wieght=1"], "unknown config key 'reg.wieght'"),
    (["trian.epochs=1"], "unknown config key 'trian.epochs'"),
    (["dataset.eps=-0.1"], "'threat' settings: eps must be in (0, 1]"),  # the earlier spelling, read as threat.eps
    (["reg=pgd", "reg.eps=0"], "reg 'pgd': eps must be positive and finite, got 0"),
    (["train.batch_size=0"], "'train' settings: batch_size must be positive, got 0"),
    (["eval.batch_size=-5"], "'eval' settings: batch_size must be positive, got -5"),
    (["device=tpu"], "unknown device 'tpu'"),
    (["optim.schedule=linear"], "schedule must be one of constant, cosine"),
    (["reg=ig_norm", "reg.recompute=true"], "reg 'ig_norm': recompute bounds memory by max_points rows per pass"),
    (["train.steps=5"], "count the run in train.epochs or in train.steps, not both (got epochs=1, steps=5); set "
                        "the other to null, e.g. train.epochs=null train.steps=N"),
    (["train.epochs=null", "train.steps=5", "train.batch_size=500"], "train.batch_size=500 is larger than the 100 "
                                                                      "training images"),
    (["model.init=tf"], "model.init must be one of pytorch, reference, got 'tf'"),
    (["seed=abc"], "seed must be an int, got 'abc'"),
    (["seed=-1"], "seed must be in 0 .. 2**63 - 1, got -1"),
    (["device=meta"], "device=meta is not supported (attrobust runs on CPUs and CUDA GPUs); choose auto, cpu"),
    (["device=mps"], "device=mps is not supported"),
    (["eval_at_end=no"], "eval_at_end must be a bool, got 'no'"),
    (["optim.lr=inf"], "optim.lr must be a finite number, got inf"),
    (["optim.betas=[2,0.5]"], "optim 'adam': betas must each be in [0, 1), got [2.0, 0.5]"),
    (["optim=sgd", "optim.momentum=1"], "optim 'sgd': momentum must be in [0, 1), got 1.0"),
    (["dataset.std=[0]"], "dataset 'mnist_mini': std must be positive and finite"),
    (["threat.eps=inf"], "threat.eps must be a finite number, got inf"),
    (["threat.pgd.steps=-1"], "'threat.pgd': steps must be >= 1, got -1"),
    (["reg=ig_norm", "reg.weight=inf"], "reg.weight must be a finite number, got inf"),
    (["reg=r2et", "reg.curvature_weight=nan"], "reg.curvature_weight must be a finite number, got nan"),
    (["model=lipschitz_cnn", "reg=attribution_distance", "reg.explainer=gradcam"],
     "reg.explainer=gradcam reads the layer the model names, and this model names none"),
    (["reg=input_grad", "reg.gradient_of=batch"], "reg.gradient_of must be one of per_example, mean_loss"),
    (["reg=r2et", "reg.k=400"], "reg 'r2et': k must be at most half the 784 pixels of an image"),
    (["reg=art", "reg.k=900"], "reg 'art': k must be at most the 784 entries of an image, got 900"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_training_input_is_one_line_and_nothing_is_written(cli, tmp_path, args, message):
    result = cli("train", *TINY_RUN[1:], *args, RUN)
    assert result.exit_code == 2
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert run_files(tmp_path / "run") <= {"failed.txt"}  # a failed start in a folder the user named


def test_a_finished_run_started_again_is_evaluated_not_trained_and_keep_last_keeps_its_state(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN).exit_code == 0
    first = (tmp_path / "run" / "model.pt").read_bytes()
    again = cli("train", *TINY_RUN, RUN)  # e.g. a sweep run again to finish its failed jobs
    assert again.exit_code == 0, again.stderr
    assert "is finished (1 epochs): nothing to train" in (tmp_path / "run" / "train.log").read_text()
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 1
    assert load_checkpoint(tmp_path / "run" / "model.pt")["model_state"].keys() == \
        torch.load(io.BytesIO(first), weights_only=True)["model_state"].keys()
    longer = cli("train", *[a for a in TINY_RUN if not a.startswith("train.epochs")], "train.epochs=2", RUN)
    assert longer.exit_code == 2 and "finished after 1 epoch(s) and its training state (last.pt) was not kept" in \
        longer.error_lines[0]
    constant = ["optim.schedule=constant", "train.keep_last=true", "hydra.run.dir=kept"]  # cosine would change
    kept = cli("train", *TINY_RUN, *constant)
    assert kept.exit_code == 0 and (tmp_path / "kept" / "last.pt").is_file()
    extended = cli("train", *[a for a in TINY_RUN if not a.startswith("train.epochs")], "train.epochs=2", *constant)
    assert extended.exit_code == 0 and len(pd.read_csv(tmp_path / "kept" / "train_log.csv")) == 2


def test_every_bad_setting_is_named_at_once(cli, tmp_path):
    result = cli("train", *TINY_RUN, "train.epochs=0", "optim.lr=-1", "threat.eps=2", RUN)
    assert result.exit_code == 2 and len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert line.startswith("error: 4 problems: (1) 'train' settings: epochs must be >= 1")
    assert "'threat' settings: eps must be in (0, 1]" in line and "optim 'adam': lr must be positive" in line
    assert "(4) attack 'pgd': eps must be at most 1" in line


def test_a_run_counted_in_steps(cli, tmp_path):
    """100 images in batches of 30: 3 full batches per epoch; 7 steps are epochs of 3, 3 and 1 steps."""
    result = cli("train", *TINY_RUN, "train.epochs=null", "train.steps=7", "train.batch_size=30", "eval_at_end=false",
                 RUN)
    assert result.exit_code == 0, result.stderr
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert list(log["epoch"]) == [1, 2, 3] and list(log["step"]) == [3, 6, 7]


BAD_EVALUATION_INPUTS = [
    (["attributions=maybe"], "attributions must be a bool, got 'maybe'"),
    (["figure_examples=abc"], "figure_examples must be an int, got 'abc'"),
    (["figure_images=most"], "figure_images must be changed, first or a list of test indices, got 'most'"),
    (["eval.protocol=strong"], "eval.protocol must be one of reference, robust, fast, got 'strong'"),
    (["eval.indices=[]"], "indices must list at least one test image"),
    (["attribution_attack.k=100000"], "attribution_attack.k=100000 is more than the 784 pixels of a 28x28 saliency "
                                      "map, so the top-k objective would be the whole map's constant total and the "
                                      "attack would not move; choose attribution_attack.k < 784"),
    (["attribution_attack.eval_k=785"], "attribution_attack.eval_k=785 is more than the 784 pixels"),
    (["attribution_attack.eval_k=784"], "attribution_attack.eval_k=784 is all of the 784 pixels"),
    (["attribution_attack.steps=0"], "attack 'topk': steps must be >= 1, got 0"),
    (["attribution_attack.eps=inf"], "attribution_attack.eps must be a finite number, got inf"),
    (["device=cuda:7"], "cuda:7"),  # CUDA missing here; on a GPU machine, fewer than 8 devices
    (["explainer=saliency"], f"unknown explainer 'saliency'; choose one of: {', '.join(EXPLAINERS.names())}"),
    (["eval.metrics=[kendall,lens]"], "unknown metric 'lens'; choose one of: center_shift, cosine, kendall"),
    (["eval.metrics=kendall"], "eval.metrics must be a list"),
    (["eval.baselines=[random_sign,random_sign]"], "eval.baselines: random_sign listed twice"),
    (["eval.baselines=[mass_center]"], "eval.baselines: 'mass_center' is not a random baseline; choose from: "
                                       "random_noise, random_sign"),
    (["explainer=gradcam", "explainer.layer=net.nope"], "explainer.layer=net.nope is not a module"),
    (["+attribution_attack.explainer=ig"], "unknown key(s) explainer for attack 'topk'"),
    (["attribution_attack.k=900", "attribution_attack.eval_k=800"],
     "attribution_attack.k=900 is more than the 784 pixels of a 28x28 saliency map, so the top-k objective would be "
     "the whole map's constant total and the attack would not move; attribution_attack.eval_k=800 is more than the "
     "784 pixels"),  # every bad top-k in one line
    (["dataset.mean=[0.1]"], "dataset.mean: without dataset=NAME the dataset and its settings come from the "
                             "checkpoint"),
    (["+dataset.mean=[0.1]"], "dataset.mean: without dataset=NAME the dataset and its settings come from the "
                              "checkpoint"),
    (["dataset.eps=0.1"], "threat.eps: without dataset=NAME the threat model comes from the checkpoint"),
    (["threat.eps=0.1"], "threat.eps: without dataset=NAME the threat model comes from the checkpoint"),
]


@pytest.mark.parametrize("args,message", BAD_EVALUATION_INPUTS)
def test_bad_evaluation_input_is_one_line_and_nothing_is_written(cli, tmp_path, args, message):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    result = cli("evaluate", "checkpoint=run", *args, "hydra.run.dir=eval")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert run_files(tmp_path / "eval") <= {"failed.txt"}


def test_an_attack_with_k_beyond_the_map_is_refused(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    result = cli("attack", "checkpoint=run", "attack.k=100000", "hydra.run.dir=attacked")  # the older spelling
    assert result.exit_code == 2 and "note: in attrobust attack the attack on explanations is attribution_attack" \
        in result.stderr
    (line,) = result.error_lines
    assert "attribution_attack.k=100000 is more than the 784 pixels" in line


def test_both_commands_spell_the_attack_on_explanations_alike(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    fast = ["eval.num_examples=4", "attribution_attack.steps=2", "explainer.steps=4", "eval.baselines=[]"]
    for command, spelling in (("attack", "attack=random_sign"), ("attack", "attribution_attack=random_sign"),
                              ("evaluate", "attack@attribution_attack=random_sign")):
        result = cli(command, "checkpoint=run", spelling, *fast, "attack.steps=1" if command == "evaluate" else
                     "seed=0", f"hydra.run.dir={command}_{spelling.split('=')[0]}")
        assert result.exit_code == 0, result.stderr
        assert ("note:" in result.stderr) == (spelling == "attack=random_sign")
    rows = [pd.read_csv(tmp_path / folder / "measures.csv") for folder in
            ("attack_attack", "attack_attribution_attack", "evaluate_attack@attribution_attack")]
    assert rows[0].equals(rows[1]) and rows[0].equals(rows[2])


def test_missing_data_folder_names_it_and_the_fix(cli, tmp_path):
    result = cli("train", "dataset=mnist", "paths.data=nodata", RUN)
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert str(Path("nodata") / "MNIST" / "raw") in line and "dataset.download=true" in line


def test_train_on_idx_fixture(cli, tmp_path):
    make_idx_dataset(tmp_path / "data", "FashionMNIST", n_train=60, n_test=20)
    result = cli("train", "dataset=fashion_mnist", *TINY_RUN, RUN)
    assert result.exit_code == 0, result.stderr
    assert (pd.read_csv(tmp_path / "run" / "results.csv")["dataset"] == "fashion_mnist").all()


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "checkpoint not found"),
    (lambda d: (d / "broken.pt").write_bytes(b"\x00" * 64), "corrupt checkpoint"),
    (lambda d: (d / "empty").mkdir(), "no model.pt or last.pt in empty"),
])
def test_bad_checkpoints_are_one_line(cli, tmp_path, setup, message):
    setup(tmp_path)
    target = {"checkpoint not found": "missing.pt", "corrupt checkpoint": "broken.pt"}.get(message, "empty")
    result = cli("evaluate", f"checkpoint={target}", "hydra.run.dir=eval")
    assert result.exit_code == 2
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert not (tmp_path / "eval" / "results.csv").exists()


def test_an_unfinished_training_is_not_evaluated_by_accident(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    (tmp_path / "run" / "model.pt").rename(tmp_path / "run" / "last.pt")  # as a training cut short leaves it
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=4", "attributions=false", "hydra.run.dir=eval")
    assert result.exit_code == 2 and result.error_lines == [
        "error: run has no model.pt: its training has not finished (run the same train command again to resume it), "
        "or pass checkpoint=run/last.pt to evaluate the unfinished state"]
    assert not (tmp_path / "eval" / "results.csv").exists()
    result = cli("evaluate", "checkpoint=run/last.pt", "eval.num_examples=4", "attributions=false",
                 "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr  # asked for by name, it is evaluated


@pytest.mark.parametrize("drop", ["model_state", "dataset_cfg", "model_cfg"])
def test_a_checkpoint_without_its_fields_is_one_line(cli, tmp_path, drop):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    payload = torch.load(tmp_path / "run/model.pt", weights_only=True)
    del payload[drop]
    torch.save(payload, tmp_path / "incomplete.pt")
    result = cli("evaluate", "checkpoint=incomplete.pt", "hydra.run.dir=eval")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert f"incomplete.pt is an incomplete attrobust checkpoint: no '{drop}'" in line


def test_evaluate_refuses_a_model_with_non_finite_weights(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    payload = torch.load(tmp_path / "run/model.pt", weights_only=True)
    state = payload["model_state"]
    first = next(key for key, value in state.items() if value.is_floating_point() and value.numel() > 3)
    payload["model_state"][first].view(-1)[:3] = float("nan")
    torch.save(payload, tmp_path / "diverged.pt")
    result = cli("evaluate", "checkpoint=diverged.pt", "hydra.run.dir=eval")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "diverged.pt holds non-finite weights (3 of " in line and f"e.g. in {first}" in line
    assert not run_files(tmp_path / "eval") & {"results.csv", "table.md", "measures.csv"}


class _RunsCode:
    """Unpickling this would call os.system: the marker appears if a checkpoint's code ever runs."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_and_no_advice_to_unsafe_loading_is_given(cli, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"format": "attrobust-checkpoint", "version": 1, "model_state": _RunsCode(marker)}, tmp_path / "x.pt")
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 16)
    for name in ("x.pt", "random.pt"):  # (torch words the refusal differently across releases: either line)
        result = cli("evaluate", f"checkpoint={name}", "hydra.run.dir=eval")
        assert result.exit_code == 2
        (line,) = result.error_lines
        assert f"refused checkpoint {name}: it names" in line or f"corrupt checkpoint {name}: not a complete" in line
        assert "weights_only" not in line
    assert not marker.exists()


@pytest.mark.parametrize("stored,message", [
    ({"name": "../../etc/x"}, "trained on dataset '../../etc/x', which this attrobust does not know"),
    ({"num_classes": "${oc.env:HOME}"}, "hold an interpolation"),
])
def test_a_checkpoint_names_only_a_known_dataset_and_plain_settings(cli, tmp_path, stored, message):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    payload = torch.load(tmp_path / "run/model.pt", weights_only=True)
    payload["dataset_cfg"] = {**payload["dataset_cfg"], **stored}
    torch.save(payload, tmp_path / "edited.pt")
    result = cli("evaluate", "checkpoint=edited.pt", "hydra.run.dir=eval")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert message in line and str(Path.home()) not in line


def test_an_unknown_preset_lists_the_presets(cli):
    result = cli("train", "+experiment=nonexistent")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert ("unknown preset (+experiment=NAME) 'nonexistent'; choose one of: mnist_mini_advaat, mnist_mini_art, "
            "mnist_mini_erar, mnist_mini_ig_norm") in line


def test_evaluate_without_checkpoint_says_how(cli):
    result = cli("evaluate")
    assert result.exit_code == 2
    assert "checkpoint" in result.error_lines[0] and "checkpoint=" in result.error_lines[0]



def test_a_failing_sweep_job_does_not_stop_the_others(cli, tmp_path):
    result = cli("train", "-m", "threat.eps=0.3,-1", *TINY_RUN, "hydra.sweep.dir=sweep")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "job 1" in line and "threat.eps=-1" in line and "eps must be in (0, 1]" in line
    assert (tmp_path / "sweep" / "0_mnist_mini_natural_seed0_threat.eps_0.3" / "table.md").exists()


def test_unknown_attribution_attack_in_evaluate_is_one_line(cli):
    result = cli("evaluate", "checkpoint=run", "attack@attribution_attack=topkk")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert ("unknown attack 'topkk'; choose one of: autoattack, mass_center, pgd, pgd_l2, random_noise, random_sign, "
            "target, topk") in line


def test_a_failed_start_leaves_nothing_or_only_failed_txt_where_the_user_named_the_folder(cli, tmp_path):
    result = cli("train", *TINY_RUN, "train.batch_size=0")  # the default run folder under outputs/train
    assert result.exit_code == 2 and len(result.error_lines) == 1
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    result = cli("train", *TINY_RUN, "train.batch_size=0", RUN)
    assert result.exit_code == 2
    assert run_files(tmp_path / "run") == {"failed.txt"}
    assert "batch_size must be positive" in (tmp_path / "run/failed.txt").read_text()
    result = cli("evaluate", "checkpoint=no/such/run")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "checkpoint not found: no/such/run" in line and not (tmp_path / "no").exists()
    assert cli("train", *TINY_RUN, "eval_at_end=false", "hydra.run.dir=trained").exit_code == 0
    assert cli("evaluate", "checkpoint=trained", "attributions=maybe").exit_code == 2
    assert not (tmp_path / "trained" / "evaluate").exists()  # nor the folder Hydra made for the evaluation


def test_a_failed_start_in_a_folder_of_an_earlier_run_leaves_that_run_as_it_was(cli, tmp_path):
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in (".hydra/overrides.yaml", "provenance.json")}
    result = cli("train", *TINY_RUN, "eval_at_end=false", "seed=1", RUN)
    assert result.exit_code == 2 and "different dataset/model/reg/optim/seed" in result.error_lines[0]
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert (tmp_path / "run" / "train.log").is_file() and (tmp_path / "run" / "model.pt").is_file()


def test_run_dir_records_provenance(cli, tmp_path):
    assert cli("train", *TINY_RUN, RUN, "seed=3").exit_code == 0
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert set(pd.read_csv(tmp_path / "run" / "results.csv")["config_hash"]) == {record["config_hash"]}  # one hash
    assert record["seed"] == 3 and "seed=3" in record["command"] and record["git_commit"]
    assert record["packages"]["torch"] and record["packages"]["hydra-core"] and record["packages"]["python"]
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()  # the composed config, as Hydra writes it
    assert yaml.safe_load((tmp_path / "run/.hydra/overrides.yaml").read_text())[-1] == "seed=3"
    assert yaml.safe_load((tmp_path / "run/.hydra/hydra.yaml").read_text())["hydra"]["job"]["name"] == "train"
    assert not (tmp_path / "run" / ".attrobust.lock").exists()  # released at the end


def test_a_rerun_of_the_recorded_command_reproduces_the_numbers(cli, tmp_path):
    assert cli("train", *TINY_RUN, "reg=pgd", "hydra.run.dir=first").exit_code == 0
    command = json.loads((tmp_path / "first" / "provenance.json").read_text())["command"]
    assert command[:2] == ["attrobust", "train"]
    assert cli(*command[1:], "hydra.run.dir=second").exit_code == 0
    first, second = (pd.read_csv(tmp_path / run / "results.csv") for run in ("first", "second"))
    assert list(first["value"]) == list(second["value"]) and list(first["config_hash"]) == list(second["config_hash"])


def test_out_of_device_memory_is_one_line_and_resumes_with_smaller_passes(cli, tmp_path, monkeypatch):
    ig = ["reg=ig_norm", "reg.ig_steps=4", "reg.approx_factor=2", "reg.eps_warmup_epochs=0", "eval_at_end=false",
          "optim.schedule=constant", "train.keep_last=true"]  # a run extended to a second epoch: its rates must not
    # depend on its length, and it keeps its training state
    assert cli("train", *TINY_RUN, *ig, RUN).exit_code == 0
    first_epoch = pd.read_csv(tmp_path / "run" / "train_log.csv")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr("attrobust.engine.train.train_one_epoch", out_of_memory)
        result = cli("train", *TINY_RUN, *ig, "train.epochs=2", RUN)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert "out of device memory in epoch 2" in line and "reg.max_points=<rows per IG pass> reg.recompute=true" in line
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1  # nothing lost
    result = cli("train", *TINY_RUN, *ig, "train.epochs=2", "reg.max_points=20", "reg.recompute=true", RUN)
    assert result.exit_code == 0, result.stderr
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert len(log) == 2
    pd.testing.assert_frame_equal(log.head(1), first_epoch)  # epoch 1 resumed, not trained again (its seconds too)


def test_a_write_killed_half_way_leaves_no_orphan_after_the_next_start(cli, tmp_path):
    """What SIGKILL during a save leaves (`atomic` writes .<name>.<pid>.partial first) is removed by the next job."""
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0
    (tmp_path / "run" / ".last.pt.4242.partial").write_bytes(b"")
    (tmp_path / "run" / ".train_log.csv.4242.partial").write_bytes(b"epoch")
    assert cli("train", *TINY_RUN, "eval_at_end=false", RUN).exit_code == 0  # resumes: nothing left to train
    assert not list((tmp_path / "run").glob(".*.partial"))


def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(cli, tmp_path, monkeypatch):
    """Simulated ENOSPC: torch's writer fails on the second save of last.pt as it does on a full disk."""
    import shutil

    run = [*TINY_RUN, "train.epochs=3", "eval_at_end=false", RUN]
    real_save, saves = torch.save, []

    def full_disk(payload, target):
        saves.append(target)
        if len(saves) == 2:
            target.write(b"half")  # the temporary file's handle
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0\n"
                               "PytorchStreamWriter failed writing file data/0: file write failed")
        real_save(payload, target)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full_disk)
        patch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
        result = cli("train", *run)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert f"No space left on device: {tmp_path / 'run' / 'last.pt'}" in line or "No space left on device: run" in line
    assert "free some space and run the same command again" in line
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1  # the last good state, whole
    assert not list((tmp_path / "run").glob(".*.partial")) and not (tmp_path / "run" / "model.pt").exists()
    assert (tmp_path / "run" / "failed.txt").is_file()
    result = cli("train", *run)
    assert result.exit_code == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 3


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB tmpfs (needs the right to mount, as root on this machine; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=False)  # the run's log may still be open


def test_a_real_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(cli, tmp_path, small_disk):
    """last.pt of small_cnn with Adam is about 5 MB: the first fits on 8 MiB, the second (written beside it) not."""
    run = [*TINY_RUN, "train.epochs=3", "eval_at_end=false", f"hydra.run.dir={small_disk / 'run'}"]
    result = cli("train", *run)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert f"No space left on device: {small_disk / 'run' / 'last.pt'}" in line and "free some space" in line
    assert load_checkpoint(small_disk / "run" / "last.pt")["epoch"] == 1
    assert not list((small_disk / "run").glob(".*.partial")) and not (small_disk / "run" / "model.pt").exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    result = cli("train", *run)
    assert result.exit_code == 0, result.stderr
    assert len(pd.read_csv(small_disk / "run" / "train_log.csv")) == 3 and (small_disk / "run" / "model.pt").is_file()


def test_a_read_only_filesystem_is_one_line_for_train_and_report(cli, tmp_path, small_disk):
    """EROFS stops root too (chmod does not): a real read-only tmpfs holding a finished run."""
    import shutil

    assert cli("train", *TINY_RUN, RUN).exit_code == 0
    shutil.copytree(tmp_path / "run", small_disk / "run", ignore=shutil.ignore_patterns("*.pt"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for command in (["train", *TINY_RUN, f"hydra.run.dir={small_disk / 'other'}"], ["report", str(small_disk)]):
        result = cli(*command)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        (line,) = result.error_lines
        assert line.startswith("error: Read-only file system: ") and "use another folder" in line


@pytest.mark.parametrize("where", ["run folder", "data root"])
def test_a_permission_fault_is_one_line_naming_the_path(cli, tmp_path, monkeypatch, where):
    """Simulated (the tests run as root here, which chmod does not stop): EACCES on the run folder or the data."""
    import errno
    from pathlib import Path as P

    denied = tmp_path / ("run" if where == "run folder" else "data")
    real_mkdir, real_iterdir = P.mkdir, P.iterdir

    def inside(path) -> bool:
        path = path.absolute()
        return path == denied or denied in path.parents

    def mkdir(self, *args, **kwargs):
        if inside(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    def iterdir(self):
        if inside(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    make_image_folder(tmp_path / "data")
    extra = ["dataset=folder", "dataset.path=data"] if where == "data root" else []
    with monkeypatch.context() as patch:
        patch.setattr(P, "mkdir", mkdir)
        patch.setattr(P, "iterdir", iterdir)
        result = cli("train", *TINY_RUN, *extra, "eval_at_end=false", RUN)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert line.startswith("error: Permission denied: ") and "check its permissions" in line


def test_a_finished_cosine_run_is_not_silently_extended(cli, tmp_path):
    kept = ["eval_at_end=false", "train.keep_last=true", RUN]
    assert cli("train", *TINY_RUN, "train.epochs=2", *kept).exit_code == 0
    result = cli("train", *TINY_RUN, "train.epochs=3", *kept)
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "schedule over 2 epochs; 3 epochs would change the rate of the epochs already run" in line
    constant = [*TINY_RUN, "optim.schedule=constant", "eval_at_end=false", "train.keep_last=true",
                "hydra.run.dir=constant"]
    assert cli("train", *constant, "train.epochs=2").exit_code == 0
    assert cli("train", *constant, "train.epochs=3").exit_code == 0  # a constant rate: extending is that run
    assert len(pd.read_csv(tmp_path / "constant" / "train_log.csv")) == 3


def test_own_data_of_small_images_gets_a_top_k_that_fits(cli, tmp_path):
    """npz and folder data default to k = eval_k = an eighth of the map (at most 100): 8 of an 8x8 image's 64."""
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "d8").mkdir()
    for split in ("train", "test"):
        np.savez(tmp_path / "d8" / f"{split}.npz", x=rng.random((30, 8, 8), dtype=np.float32), y=np.arange(30) % 3)
    assert cli("train", "dataset=npz", "dataset.path=d8", *TINY_RUN[:2], "eval_at_end=false", RUN).exit_code == 0
    result = cli("evaluate", "checkpoint=run", "dataset_path=d8", "eval.num_examples=6", "attack.steps=1",
                 "attribution_attack.steps=2", "explainer.steps=4", "eval.baselines=[]", "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr
    assert "k=8 and eval_k=8 of the 64 pixels" in (tmp_path / "eval" / "evaluate.log").read_text()


def test_debug_fast_trains_one_short_epoch_and_evaluates_a_few_images(cli, tmp_path):
    result = cli("train", "debug=fast", "model=small_cnn", "hydra.run.dir=run")
    assert result.exit_code == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 1
    assert set(pd.read_csv(tmp_path / "run" / "results.csv")["n"]) == {50}
