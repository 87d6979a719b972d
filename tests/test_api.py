"""The Python API (attrobust/api.py): its tables equal the command's on the same images and seed, whatever form the
data takes; bad data is refused in one line; the example notebook (docs/examples/notebook.py) runs."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attrobust import api
from attrobust.errors import AttrobustError
from attrobust.reporting.evaluation import PER_IMAGE_FILES
from conftest import TINY_RUN

EVALUATION = ["eval.num_examples=6", "explainer=gradient", "attribution_attack.steps=3", "eval.bootstrap=100",
              "figure_examples=2", "eval.faithfulness=[{name:insertion,steps:4}]"]
NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "examples" / "notebook.py"


def largest_difference(cli_folder: Path, result: api.Evaluation) -> float:
    """The largest difference between the command's and the API's numbers: every per-image file, and the value and
    interval of every result row (the rows' identity columns name the model differently)."""
    differences = []
    for part, name in PER_IMAGE_FILES.items():
        if (cli_folder / name).is_file():
            command, ours = pd.read_csv(cli_folder / name), result.per_image[part]
            assert list(command.columns) == list(ours.columns) and len(command) == len(ours) > 0
            numbers = command.select_dtypes("number").columns
            differences.append(float((command[numbers] - ours[numbers]).abs().max().max()))
    rows = pd.read_csv(cli_folder / "results.csv")
    assert list(rows[["attack", "metric", "n"]].itertuples(index=False)) == \
        list(result.rows[["attack", "metric", "n"]].itertuples(index=False))
    for column in ("value", "low", "high"):
        differences.append(float((rows[column] - result.rows[column]).abs().max()))
    return max(differences)


def test_the_api_equals_the_command_on_the_same_images_and_seed(cli, tmp_path, monkeypatch):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run").exit_code == 0
    assert cli("evaluate", "checkpoint=run", *EVALUATION, "hydra.run.dir=command").exit_code == 0
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # the commands' handlers write to CliRunner's streams
    run = api.load_run("run")
    assert run.images.dtype == torch.float32 and len(run.images) == 1000
    loader = DataLoader(TensorDataset(run.images, run.labels), batch_size=7)  # batches that split the images
    # the command takes the threat model the checkpoint was trained with (TINY_RUN's PGD steps); a module has none
    from_module = api.evaluate(run.model, loader, "dataset=mnist_mini", "threat.pgd.steps=2", *EVALUATION,
                               out="module")
    assert set(from_module.per_image) == {"accuracy", "attacks", "faithfulness"}
    assert largest_difference(tmp_path / "command", from_module) == 0.0
    from_run = api.evaluate("run", (run.images, run.labels), *EVALUATION, out="folder")
    assert largest_difference(tmp_path / "command", from_run) == 0.0
    command_table = pd.read_csv(tmp_path / "command" / "table.csv")
    numbers = [column for column in command_table.select_dtypes("number").columns if column != "runs"]
    pd.testing.assert_frame_equal(from_module.table[numbers].reset_index(drop=True), command_table[numbers],
                                  check_dtype=False)
    examples = from_module.examples()
    assert examples["image"].shape == examples["perturbed"].shape == (2, 1, 28, 28)
    assert np.abs(examples["perturbed"] - examples["image"]).max() <= examples["eps"] + 1e-6


def test_data_of_no_attrobust_dataset_names_its_threat_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    images, labels = torch.randint(0, 256, (12, 3, 8, 8)) / 255, torch.arange(12) % 4
    result = api.evaluate(net, (images, labels), "threat=your_data", "threat.eps=0.05", "attributions=false",
                          "eval.bootstrap=0", out="mine")
    assert list(result.rows["dataset"].unique()) == ["tensors"]
    assert list(result.rows["model"].unique()) == ["Sequential"]
    with torch.no_grad():
        correct = (net(images).argmax(1) == labels).float().mean().item() * 100
    assert result.rows.set_index("metric").loc["natural_accuracy", "value"] == pytest.approx(correct)


def test_bad_data_and_missing_settings_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    normalised = (torch.rand(4, 1, 28, 28) - 0.5) / 0.5, torch.zeros(4, dtype=torch.long)
    with pytest.raises(AttrobustError, match=r"images must be float NCHW in \[0, 1\] \(normalisation inside the "):
        api.evaluate(net, normalised, "dataset=mnist_mini")
    with pytest.raises(AttrobustError, match="needs the data's dataset .dataset=NAME. or, for data of your own, its "
                                             "threat model .threat=NAME"):
        api.evaluate(net, (torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(AttrobustError, match="unknown explainer 'gradcam2'; choose one of: "):
        api.evaluate(net, None, "dataset=mnist_mini", "explainer=gradcam2")
    assert not Path("outputs").exists()  # refused before any work


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(NOTEBOOK))
    result = namespace["result"]
    attacks = result.table["attack"].str.split("; ").str[1].str.split().str[0]  # "pgd ...; topk of gradient ..."
    assert list(attacks) == ["topk", "random_sign", "random_noise"]
    assert (tmp_path / "outputs" / "api" / "notebook" / "examples.npz").is_file()
    assert len(namespace["examples"]["index"]) == 4


def test_labels_that_are_no_class_indices_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    images = torch.rand(4, 1, 28, 28)
    for labels, message in [(torch.eye(10)[:4], r"labels must be class indices, one per image \(shape \(4,\)\), got "
                                                r"torch.float32 \(4, 10\)"),
                            (torch.tensor([0, 1, 2, 12]), r"labels run from 0 to 12, and the model has 10 classes")]:
        with pytest.raises(AttrobustError, match=message):
            api.evaluate(net, (images, labels), "dataset=mnist_mini")
    with pytest.raises(AttrobustError, match="has no parameters"):
        api.evaluate(nn.Flatten(), (images, torch.zeros(4, dtype=torch.long)), "dataset=mnist_mini")
    with pytest.raises(AttrobustError, match=r"api.evaluate does not track to an experiment tracker \(logger=...\)"):
        api.evaluate(net, (images, torch.zeros(4, dtype=torch.long)), "dataset=mnist_mini", "logger=csv")
    assert not Path("outputs").exists()
