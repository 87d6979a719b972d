"""Result rows: one row per run x metric, the only place results live (tables are made from rows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from attrobust.engine.evaluate import AccuracyCounts

ROW_COLUMNS = ["run_id", "dataset", "model", "reg", "attack", "metric", "value", "unit", "n", "seed",
               "git_commit", "config_hash"]


@dataclass(frozen=True)
class RunIdentity:
    """What every row of one run shares."""

    run_id: str
    dataset: str
    model: str
    reg: str
    attack: str
    seed: int
    git_commit: str
    config_hash: str


def accuracy_rows(identity: RunIdentity, counts: AccuracyCounts) -> pd.DataFrame:
    """Rows for natural accuracy and (if measured) accuracy under attack, in percent of `counts.n` images."""
    metrics = [("natural_accuracy", counts.natural_accuracy_pct)]
    if counts.adversarial_accuracy_pct is not None:
        metrics.append(("adversarial_accuracy", counts.adversarial_accuracy_pct))
    base = asdict(identity)
    rows = [{**base, "metric": metric, "value": value, "unit": "%", "n": counts.n} for metric, value in metrics]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
