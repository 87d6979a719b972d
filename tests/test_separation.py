"""Measures that prove they measure: the attack-vs-control separation of each measure (reporting/separation.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from attrobust.metrics import build_metrics
from attrobust.reporting.separation import compared, flagged_lines, separation

METRICS = build_metrics(["kendall", "center_shift"])  # higher is better; lower is better


def frame(attack: dict[str, np.ndarray], rng: np.random.Generator, images: int = 40) -> pd.DataFrame:
    """Per-image rows of an attacks part: the same images under each line, in shuffled order per line."""
    parts = []
    for line, values in attack.items():
        order = rng.permutation(images)
        parts.append(pd.DataFrame({"index": order, "kendall": values[order], "center_shift": -values[order] + 1,
                                   "attack": line}))
    return pd.concat(parts, ignore_index=True)


def test_an_attack_that_does_more_damage_than_noise_is_separated_and_one_that_does_not_is_flagged():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.6, 1.0, 40)
    rows = frame({"topk": noise - 0.3, "random_sign": noise, "random_noise": noise + rng.normal(0, 0.01, 40)}, rng)
    table = separation(rows, "topk", ["random_sign", "random_noise"], METRICS)
    assert len(table) == 4 and table["separates"].all() and (table["win_pct"] == 100).all()
    same = frame({"topk": noise, "random_sign": noise.copy()}, rng)
    tied = separation(same, "topk", ["random_sign"], METRICS)
    assert (~tied["separates"]).all() and (tied["ties"] == 40).all() and (tied["auroc"] == 0.5).all()
    lines = flagged_lines(tied, {"kendall": "CO", "center_shift": "shift"})
    assert len(lines) == 1 and "cannot tell topk from the random control random_sign" in lines[0] and "CO" in lines[0]


def test_the_numbers_against_their_definitions():
    rng = np.random.default_rng(3)
    attack, control = rng.normal(0.2, 1, 30), rng.normal(0, 1, 30)
    attack[:3] = control[:3]  # ties count as neither
    got = compared(attack, control)
    pairs = np.subtract.outer(attack, control)
    assert got["auroc"] == pytest.approx(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / 900)
    wins, losses = int((attack > control).sum()), int((attack < control).sum())
    assert (got["attack_wins"], got["control_wins"], got["ties"]) == (wins, losses, 3)
    assert got["p_value"] == pytest.approx(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)
    assert got["win_pct"] == pytest.approx(100 * wins / 30)
