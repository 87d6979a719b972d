"""Checkpoints written before the threat model moved to its own group (tests/fixtures/before_threat_group, written by
attrobust 1129ac4) evaluate and resume with the numbers of the same checkpoint in today's format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch

from attrobust.attacks.threat import THREAT_KEYS

FIXTURE = Path(__file__).parent / "fixtures" / "before_threat_group"
TRAIN = ["reg=pgd", "model=small_cnn", "model.conv_channels=[4,8]", "model.hidden_units=16", "train.num_examples=1000",
         "train.batch_size=50", "train.keep_last=true", "eval_at_end=false", "threat.pgd.steps=2", "optim.lr=0.01",
         "optim.schedule=constant"]
EVALUATE = ["eval.num_examples=12", "attack.steps=3", "attribution_attack.steps=3", "explainer.steps=4",
            "eval.baselines=[random_sign]", "eval.protocol=robust", "device=cpu"]


def in_todays_format(source: Path, target: Path) -> None:
    """`source`'s checkpoints as today's code writes them: the threat keys in `threat_cfg`, not in `dataset_cfg`."""
    target.mkdir()
    for name in ("model.pt", "last.pt"):
        payload = torch.load(source / name, weights_only=True)
        payload["threat_cfg"] = {key: payload["dataset_cfg"].pop(key) for key in THREAT_KEYS}
        torch.save(payload, target / name)


def test_the_fixture_is_in_the_earlier_format():
    payload = torch.load(FIXTURE / "model.pt", weights_only=True)
    assert "threat_cfg" not in payload and set(THREAT_KEYS) <= set(payload["dataset_cfg"])


def test_an_earlier_checkpoint_evaluates_to_the_numbers_of_todays_format(cli, tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "old")
    in_todays_format(FIXTURE, tmp_path / "new")
    for name in ("old", "new"):
        result = cli("evaluate", f"checkpoint={name}", *EVALUATE, f"hydra.run.dir=eval_{name}")
        assert result.exit_code == 0, result.stderr
    old, new = (pd.read_csv(tmp_path / f"eval_{name}" / "results.csv") for name in ("old", "new"))
    columns = ["dataset", "model", "reg", "attack", "metric", "value", "unit", "n", "setting", "evaluation"]
    assert len(old) > 10 and old[columns].equals(new[columns])
    measures = [(tmp_path / f"eval_{name}" / "measures.csv").read_bytes() for name in ("old", "new")]
    assert measures[0] == measures[1]


def test_an_earlier_training_state_resumes_to_the_weights_of_todays_format(cli, tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "old")
    in_todays_format(FIXTURE, tmp_path / "new")
    for name in ("old", "new"):
        result = cli("train", *TRAIN, "train.epochs=3", f"hydra.run.dir={name}")
        assert result.exit_code == 0, result.stderr
        assert "resuming from" in (tmp_path / name / "train.log").read_text()
    logs = [pd.read_csv(tmp_path / name / "train_log.csv").drop(columns="seconds") for name in ("old", "new")]
    assert len(logs[0]) == 3 and logs[0].equals(logs[1])
    old, new = (torch.load(tmp_path / name / "model.pt", weights_only=True) for name in ("old", "new"))
    assert all(torch.equal(old["model_state"][key], new["model_state"][key]) for key in old["model_state"])
    assert new["threat_cfg"]["eps"] == 0.3 and "eps" not in new["dataset_cfg"]


def test_an_earlier_checkpoint_missing_threat_keys_takes_them_from_its_datasets_default(cli, tmp_path):
    (tmp_path / "old").mkdir()
    payload = torch.load(FIXTURE / "model.pt", weights_only=True)
    del payload["dataset_cfg"]["attribution_training"]  # as checkpoints written before that key existed
    torch.save(payload, tmp_path / "old" / "model.pt")
    result = cli("evaluate", "checkpoint=old", "eval.num_examples=4", "attributions=false", "attack.steps=1",
                 "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr


def test_a_threat_setting_stored_as_an_interpolation_is_refused():
    import pytest

    from attrobust.errors import AttrobustError
    from attrobust.trained import checkpoint_threat

    with pytest.raises(AttrobustError, match="threat settings hold an interpolation"):
        checkpoint_threat({"dataset_cfg": {"name": "mnist_mini"}, "threat_cfg": {"eps": "${oc.env:HOME}"}})
    with pytest.raises(AttrobustError, match="threat settings hold an interpolation"):
        checkpoint_threat({"dataset_cfg": {"name": "mnist_mini", "eps": "${oc.env:HOME}"}})
