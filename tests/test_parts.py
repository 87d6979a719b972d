"""Evaluation parts (attrobust/parts): the contract of every registered part, and records written before parts were
registered."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from attrobust.engine.accel import NO_ACCEL
from attrobust.engine.evaluate import EvalSettings
from attrobust.parts import PARTS, Request, part_classes, part_settings
from attrobust.reporting.evaluation import EvaluationRecord
from attrobust.tasks.common import CommandSettings
from attrobust.tasks.config import RunConfig


@pytest.mark.parametrize("name", PARTS.names())
def test_part_contract(name):
    part = PARTS.get(name)
    assert part.registry_name == name and part.file.endswith(".csv")
    assert [p.registry_name for p in part_classes()].count(name) == 1
    others = [p for p in part_classes() if p is not part]
    assert part.file not in {p.file for p in others} and part.position not in {p.position for p in others}
    assert set(part.eval_keys) <= set(EvalSettings.__dataclass_fields__) | set(part_settings())
    if part.setting is not None:  # it owns the list `eval.<setting>` of measures named in its registry
        assert part.measures is not None and part.example and part.listed({}) == []
        assert [m.registry_name for m in part.listed({part.setting: part.measures.names()[:1]})] == \
            part.measures.names()[:1]
    assert (part.__module__.split(".")[-1] == name) and part.__module__.startswith("attrobust.parts.")
    # asked for nothing (no accuracy, no attack, the default eval lists), a part does not run
    evaluation = EvalSettings(batch_size=8, metrics=("kendall",), baselines=())
    config = RunConfig({"explainer": {"name": "gradient"}, "eval": {}}, CommandSettings(), evaluation, NO_ACCEL)
    trained = SimpleNamespace(config=config, eval_settings=config.eval, plain=config.plain)
    assert part.configured(trained, Request(accuracy_attack=None, attack_key=None)) is None


def test_a_record_written_before_parts_were_registered_reads_into_parts(tmp_path):
    identity = {"run_id": "r", "dataset": "d", "model": "m", "reg": "g", "attack": "a", "seed": 0,
                "git_commit": "c", "config_hash": "h", "setting": "s", "evaluation": "e"}
    old = {"fingerprint": "f0f0f0", "shard": None, "num_shards": 1, "images": [5, 6], "eval": {},
           "accuracy": identity, "attacks": [["topk", identity], ["random_sign", identity]],
           "stability": identity, "faithfulness": None}
    (tmp_path / "evaluation.json").write_text(json.dumps(old))
    record = EvaluationRecord.read(tmp_path / "evaluation.json")
    assert list(record.parts) == ["accuracy", "attacks", "stability"]
    assert [line for line, _ in record.parts["attacks"]] == ["topk", "random_sign"]
