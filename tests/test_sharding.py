"""Sharded evaluation: 4 shards of 40 images (one of them killed and run again) merge to the per-image rows and the
table of one unsharded run, bitwise on CPU with the same threads per process; so does a 2-process torchrun evaluate
against one process of one thread."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_RUN, wait_for

from attrobust.engine.sharding import Shard
from attrobust.errors import AttrobustError
from attrobust.parts import part_settings
from attrobust.reporting.evaluation import EVALUATION_FILE, PER_IMAGE_FILES, EvaluationRecord, PerImage
from attrobust.reporting.merge import check_coverage, check_same_units

# every evaluation part's measure list (attrobust/parts), cheap where its first measure would be slow
CHEAP = {"stability": "[{name:max_sensitivity,samples:3}]",
         "faithfulness": "[{name:deletion,steps:7},{name:insertion,steps:7}]"}
EVALUATE = ["checkpoint=run", "eval.num_examples=40", "attack.steps=2", "attribution_attack.steps=2",
            "explainer.steps=4", "eval.attribution_batch_size=1", "eval.batch_size=16",
            "eval.baselines=[random_sign]",
            *(f"eval.{key}={CHEAP.get(key, f'[{part.measures.names()[0]}]')}" for key, part in part_settings().items())]
FEWER_IMAGES = [item if not item.startswith("eval.num_examples=") else "eval.num_examples=20" for item in EVALUATE]
COMPARED = [*PER_IMAGE_FILES.values(), "results.csv", "table.csv", "table.md"]


def shard_command(i: int, n: int = 4) -> list[str]:
    return ["evaluate", *EVALUATE, f"eval.shard={i}", f"eval.num_shards={n}", f"hydra.run.dir=shards/{i}"]


def same_files(a: Path, b: Path, names: list[str] = COMPARED) -> None:
    for name in names:
        left, right = (folder / name for folder in (a, b))
        if name == "results.csv":  # the rows name the commit of the code that wrote them: equal here
            assert pd.read_csv(left).equals(pd.read_csv(right)), name
        assert left.read_bytes() == right.read_bytes(), name


def test_units_cover_every_position_once_in_order():
    for total, size, count in ((40, 16, 4), (7, 3, 2), (3, 5, 4), (0, 2, 3)):
        units = [unit for index in range(count) for unit in Shard(index, count).units(total, size)]
        positions = sorted(p for first, end in units for p in range(first, end))
        assert positions == list(range(total))
        assert list(Shard().units(total, size)) == sorted(units)
    with pytest.raises(ValueError, match="shard must be in 0 .. 3"):
        Shard(4, 4)


@pytest.mark.processes
def test_four_shards_and_a_killed_one_merge_to_the_unsharded_run(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    whole = cli("evaluate", *EVALUATE, "hydra.run.dir=whole")
    assert whole.exit_code == 0, whole.stderr
    scored = pd.read_csv(tmp_path / "whole" / "measures.csv")
    assert scored["attack"].nunique() == 2 and len(scored) >= 8  # every shard attacks some images
    for i in (0, 1, 3):
        result = cli(*shard_command(i))
        assert result.exit_code == 0, result.stderr
        assert not (tmp_path / "shards" / str(i) / "results.csv").exists()  # a shard's table would mislead

    killed = subprocess.Popen([sys.executable, "-m", "attrobust", *shard_command(2)], cwd=tmp_path,  # same threads
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "shards" / "2" / "measures.parts" / "topk" / "2.csv", killed)  # its first chunk is done
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "shards" / "2" / EVALUATION_FILE).exists()
    missing = cli("merge", "shards")
    assert missing.exit_code == 2 and "shard(s) [2] of the 4" in missing.stderr
    assert "eval.shard=2" in missing.stderr  # the command that runs it again
    assert not (tmp_path / "shards" / "merged" / "results.csv").exists()

    rerun = cli(*shard_command(2))  # the killed shard alone, in its folder: it resumes its chunks
    assert rerun.exit_code == 0, rerun.stderr
    log = (tmp_path / "shards" / "2" / "evaluate.log").read_text()
    # the kill lands after the first chunk, or (on a loaded machine) after a later one: either is resumed
    assert re.search(r"resuming topk: [1-9]\d* of \d+ images were measured by an earlier run", log), log[-2000:]
    merged = cli("merge", "shards")
    assert merged.exit_code == 0, merged.stderr
    same_files(tmp_path / "whole", tmp_path / "shards" / "merged")
    whole_entry, merged_entry = ({key: value for key, value in json.loads((folder / "entry.json").read_text()).items()
                                  if key != "gallery"} for folder in (tmp_path / "whole", tmp_path / "shards/merged"))
    assert merged_entry == whole_entry  # the merge's leaderboard entry is the unsharded run's


def test_every_shard_of_a_20_image_evaluation_does_work_and_the_merge_is_the_whole_run(cli, tmp_path):
    """Default units (eval.batch_size 250, auto attack chunks): a small part is cut in at least 8 units."""
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    small = ["evaluate", "checkpoint=run", "eval.num_examples=20", "attack.steps=2", "attribution_attack.steps=2",
             "explainer.steps=4", "eval.baselines=[]"]
    assert cli(*small, "hydra.run.dir=whole").exit_code == 0
    for count in (2, 4):
        for i in range(count):
            result = cli(*small, f"eval.shard={i}", f"eval.num_shards={count}", f"hydra.run.dir=by{count}/{i}")
            assert result.exit_code == 0, result.stderr
            for name in ("accuracy.csv", "measures.csv"):  # every shard has images of each part
                assert len(pd.read_csv(tmp_path / f"by{count}" / str(i) / name)) > 0, (count, i, name)
            assert "nan%" not in (tmp_path / f"by{count}" / str(i) / "evaluate.log").read_text()
        assert cli("merge", f"by{count}").exit_code == 0
        same_files(tmp_path / "whole", tmp_path / f"by{count}" / "merged",
                   ["accuracy.csv", "measures.csv", "results.csv", "table.csv", "table.md"])


def test_report_merges_the_shards_of_a_sweep(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    sweep = cli("evaluate", "-m", "checkpoint=run", "eval.num_examples=20", "attack.steps=2", "attributions=false",
                "eval.shard=0,1", "eval.num_shards=2", "hydra.sweep.dir=sweep")
    assert sweep.exit_code == 0, sweep.stderr
    assert (tmp_path / "sweep" / "merged" / "results.csv").is_file()  # the sweep's report merged them
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    assert len(report) == 1 and "shard" not in sweep.stderr  # one line, no shard listed as a problem
    whole = cli("evaluate", "checkpoint=run", "eval.num_examples=20", "attack.steps=2", "attributions=false",
                "hydra.run.dir=whole")
    assert whole.exit_code == 0
    assert (tmp_path / "whole" / "table.csv").read_bytes() == (tmp_path / "sweep" / "merged" / "table.csv").read_bytes()


def test_a_shard_needs_its_number(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_shards=4", "hydra.run.dir=bad")
    assert result.exit_code == 2 and "eval.num_shards=4 needs eval.shard=0 .. 3" in result.stderr
    result = cli("evaluate", "checkpoint=run", "eval.shard=4", "eval.num_shards=4", "hydra.run.dir=bad")
    assert result.exit_code == 2 and "shard must be in 0 .. 3" in result.stderr
    assert not (tmp_path / "bad" / EVALUATION_FILE).exists()
    result = cli("explain", "checkpoint=run", "eval.shard=0", "eval.num_shards=2", "hydra.run.dir=bad_explain")
    assert result.exit_code == 2 and "`explain` draws its maps whole" in result.stderr


@pytest.mark.processes
def test_two_torchrun_processes_give_the_rows_of_one(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread in each process, as in each torchrun process below

    def evaluate(*launcher: str, folder: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *launcher, "-m", "attrobust", "evaluate", *FEWER_IMAGES,
                               f"hydra.run.dir={folder}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)

    whole = evaluate(folder="whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    ddp = evaluate("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", folder="ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    same_files(tmp_path / "whole", tmp_path / "ddp")


def record(**fields) -> EvaluationRecord:
    identity = {"run_id": "r", "dataset": "d", "model": "m", "reg": "g", "attack": "a", "seed": 0, "git_commit": "c",
                "config_hash": "h"}
    return EvaluationRecord(**{"fingerprint": "f0f0f0", "shard": 0, "num_shards": 2, "images": [5, 6, 7],
                               "eval": {"metrics": ["kendall"]}, "parts": {"accuracy": [("accuracy", identity)]},
                               **fields})


def test_a_merge_refuses_shards_that_do_not_add_up():
    accuracy = pd.DataFrame({"index": [5, 6, 7], "label": [0, 1, 2], "correct": [True, True, False]})
    twice = pd.DataFrame({"index": [5, 5], "label": [0, 0], "max_sensitivity": [0.1, 0.1]})
    with pytest.raises(AttrobustError, match="an image is scored twice"):
        check_coverage(record(), PerImage(accuracy=accuracy, stability=twice))
    with pytest.raises(AttrobustError, match="accuracy rows do not cover each selected image once"):
        check_coverage(record(), PerImage(accuracy=accuracy.iloc[:2]))
    one = pd.DataFrame({"index": [5], "label": [0], "deletion": [0.2]})
    with pytest.raises(AttrobustError, match="the parts score different images"):
        check_coverage(record(), PerImage(accuracy=accuracy, stability=twice.iloc[:1].assign(index=6),
                                          faithfulness=one))
    check_coverage(record(), PerImage(accuracy=accuracy, faithfulness=one))  # one part: nothing to compare
    folders = [Path("a"), Path("b")]
    with pytest.raises(AttrobustError, match="cut the evaluation into other units"):
        check_same_units([record(chunks={"topk": [8, 8]}), record(shard=1, chunks={"topk": [4, 4]})], folders)
    with pytest.raises(AttrobustError, match="device cuda vs cpu"):
        check_same_units([record(), record(shard=1, device="cuda")], folders)
    check_same_units([record(chunks={"topk": [8, 8]}), record(shard=1, chunks={"topk": [8, 4]})], folders)  # warned


def test_two_evaluations_merge_into_two_folders(cli, tmp_path):
    assert cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    for seed in (0, 1):
        for i in (0, 1):
            result = cli("evaluate", "checkpoint=run", "eval.num_examples=20", "attack.steps=2", "attributions=false",
                         "eval.batch_size=8", f"seed={seed}", f"eval.shard={i}", "eval.num_shards=2",
                         f"hydra.run.dir=big/{seed}_{i}")
            assert result.exit_code == 0, result.stderr
        merged = cli("merge", "big")
        assert merged.exit_code == 0, merged.stderr
    folders = sorted(path.name for path in (tmp_path / "big").iterdir() if path.name.startswith("merged"))
    assert len(folders) == 2 and folders[0] == "merged"  # the second evaluation's merge beside the first's
    seeds = {int(pd.read_csv(tmp_path / "big" / name / "results.csv")["seed"].iloc[0]) for name in folders}
    assert seeds == {0, 1}


def test_a_shard_without_images_to_attack_says_so_without_a_warning(caplog):
    import logging

    from attrobust.parts.attacks import log_attack_summary

    caplog.set_level(logging.INFO, logger="attrobust")
    log_attack_summary("topk of ig(4)", pd.DataFrame(), 20, [], Shard(3, 4))
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "no correctly classified image of this evaluation falls to shard 3 of 4" \
        in record.getMessage()
    log_attack_summary("topk of ig(4)", pd.DataFrame(), 20, [], Shard())
    assert caplog.records[-1].levelno == logging.WARNING  # a whole evaluation with nothing right: one warning
