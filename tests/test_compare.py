"""Paired comparisons (`attrobust compare`, reporting/compare.py): the statistics against their definitions, and the
command on two models evaluated alike (and one evaluated otherwise, refused)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from attrobust.errors import AttrobustError
from attrobust.reporting.compare import Evaluated, check_pairable, holm, images_needed, paired, paired_over_seeds
from attrobust.reporting.entry import FINGERPRINT_DEFINITION, protocol_fingerprint
from attrobust.reporting.intervals import Bootstrap
from conftest import TINY_RUN

EVALUATE = ["eval.num_examples=12", "attack.steps=1", "attribution_attack.steps=2", "explainer.steps=4",
            "eval.baselines=[]", "eval.metrics=[topk_intersection,kendall]"]


def test_holm_adjusts_as_its_step_down_definition():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    assert holm(np.array([0.5, 0.9])).max() <= 1.0


def test_paired_tests_intervals_and_images_needed_match_their_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.2, 60), rng.normal(0.55, 0.2, 60)
    got = paired(a, b, False, Bootstrap(seed=4))
    assert got["p_value"] == pytest.approx(stats.wilcoxon(b - a).pvalue)
    assert (got["low"], got["high"]) == Bootstrap(seed=4).interval(b - a)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert got["images_needed"] == math.ceil((z * (b - a).std(ddof=1) / abs((b - a).mean())) ** 2)
    right_a, right_b = (rng.random(80) < 0.6) * 100.0, (rng.random(80) < 0.8) * 100.0
    accuracy = paired(right_a, right_b, True, Bootstrap())
    only_b, only_a = int(((right_b > 0) & (right_a == 0)).sum()), int(((right_a > 0) & (right_b == 0)).sum())
    assert accuracy["test"] == "McNemar"
    assert accuracy["p_value"] == pytest.approx(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)
    assert images_needed(np.zeros(5)) != images_needed(np.zeros(5))  # nothing to resolve: NaN


def test_over_seeds_the_difference_pairs_seed_and_image_with_a_hierarchical_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.2, (3, 50))
    b = a + rng.normal(0.05, 0.1, (3, 50)) + np.array([[0.0], [0.1], [-0.05]])  # seeds shift the difference
    got = paired_over_seeds(a, b, Bootstrap(seed=2))
    assert got["difference"] == pytest.approx((b - a).mean()) and got["images"] == 50
    assert got["p_value"] == pytest.approx(stats.wilcoxon((b - a).mean(axis=0)).pvalue)
    assert (got["low"], got["high"]) == Bootstrap(seed=2).hierarchical(b - a)


def test_compare_pairs_two_models_evaluated_alike_and_refuses_others(cli, tmp_path):
    for seed in (0, 1):
        assert cli("train", *TINY_RUN, "eval_at_end=false", f"seed={seed}", f"hydra.run.dir=m{seed}").exit_code == 0
        assert cli("evaluate", f"checkpoint=m{seed}", *EVALUATE, f"hydra.run.dir=e{seed}").exit_code == 0
    result = cli("compare", "e0", "e1", "--out", "cmp")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table["measure"]) == ["natural_accuracy", "adversarial_accuracy", "topk_intersection", "kendall"]
    assert set(table["test"]) == {"McNemar", "Wilcoxon"}
    np.testing.assert_allclose(table["p_holm"], holm(table["p_value"].to_numpy()))  # over the whole table
    assert (table["resolved"] == (table["p_holm"] < 0.05)).all()
    assert "resolved" in (tmp_path / "cmp" / "compare.md").read_text()
    entries = [json.loads((tmp_path / f"e{seed}" / "entry.json").read_text()) for seed in (0, 1)]
    assert entries[0]["fingerprint"] == entries[1]["fingerprint"] and entries[0]["run_id"] != entries[1]["run_id"]
    assert [entry["seed"] for entry in entries] == [0, 1]  # the training seed (both evaluated with seed 0)
    assert {entry["fingerprint_definition"] for entry in entries} == {FINGERPRINT_DEFINITION}
    assert list(entries[0]["measures"]) == ["topk_intersection_strict", "kendall_strict"]  # headline, in order
    accuracy_only = ["attributions=false", "attack.steps=2", "hydra.run.dir=a0"]  # another attack, no attributions
    assert cli("evaluate", "checkpoint=m0", *EVALUATE, *accuracy_only).exit_code == 0
    joining = json.loads((tmp_path / "a0" / "entry.json").read_text())
    assert joining["fingerprint"] != entries[0]["fingerprint"]
    assert joining["images_fingerprint"] == entries[0]["images_fingerprint"] and joining["confidence"] == 0.95
    board = cli("leaderboard", ".", "--out", "board")
    assert board.exit_code == 0, board.stderr
    assert (tmp_path / "board" / "index.html").read_text().count("<tr data-entry=") == 2  # it joined m0's line
    header = next(line for line in (tmp_path / "board" / "leaderboard.md").read_text().splitlines()
                  if line.startswith("| method"))
    assert "1x0.01 (%)" in header and "2x0.01 (%)" in header  # both attacks' columns on the one board
    assert cli("evaluate", "checkpoint=m1", *EVALUATE, "eval.num_examples=10", "hydra.run.dir=e2").exit_code == 0
    refused = cli("compare", "e0", "e2")
    assert refused.exit_code == 2 and "cannot pair e0 and e2: they evaluated different test images" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    over_seeds = cli("compare", "e0,e1", "e1,e0", "--out", "seeds")  # two "methods" of two seeds each, crossed
    assert over_seeds.exit_code == 0, over_seeds.stderr
    crossed = pd.read_csv(tmp_path / "seeds" / "compare.csv")
    assert (crossed["seeds"] == 2).all() and (crossed["difference"].abs() < 1e-12).all()  # the seeds cancel
    assert not crossed["resolved"].any()
    uneven = cli("compare", "e0,e1", "e1")
    assert uneven.exit_code == 2 and "cannot pair e0,e1 and e1: 2 and 1 seeds" in uneven.stderr


def test_attacks_that_ran_differently_are_neither_paired_nor_ranked_together():
    """A model without a smooth counterpart is attacked along an estimated direction whatever the configuration says:
    compare refuses the pair, and the entries' protocol fingerprints differ."""
    def evaluated(label: str, attack: str) -> Evaluated:
        record = SimpleNamespace(images=[1, 2], parts={"attacks": [("topk", {"attack": attack})]}, settings={})
        return Evaluated(label, record, {})  # type: ignore[arg-type]

    analytic, estimated = "topk of ig(10) eps=0.3 20x0.025 k=200 1 run", "topk of ig(10) ... estimated(50 probes)"
    with pytest.raises(AttrobustError, match="cannot pair a and b: their attacks on explanations ran differently"):
        check_pairable(evaluated("a", analytic), evaluated("b", estimated))
    check_pairable(evaluated("a", analytic), evaluated("c", analytic))
    plain = {"eval": {"protocol": "robust"}, "attribution_attack": {"name": "topk"}}
    assert protocol_fingerprint([1, 2], plain, [analytic]) != protocol_fingerprint([1, 2], plain, [estimated])
