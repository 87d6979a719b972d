"""Result rows: one row per run x metric, the only place results live (tables are made from rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import pandas as pd

from attrobust.metrics import Metric
from attrobust.reporting.intervals import NO_INTERVALS, Bootstrap

ROW_COLUMNS = ["run_id", "dataset", "model", "reg", "attack", "metric", "value", "unit", "n", "seed",
               "git_commit", "config_hash", "setting", "evaluation", "low", "high"]
# `low`, `high`: the value's confidence interval over images (reporting/intervals.py; empty where there is none)
ROWS_BEFORE_INTERVALS = ROW_COLUMNS[:-2]  # result files written before the intervals
OLD_ROW_COLUMNS = ROW_COLUMNS[:-4]  # result files written before the setting and evaluation hashes too


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
    setting: str = ""       # hash of the trained model's settings but its seed (reporting/settings.py)
    evaluation: str = ""    # hash of what the evaluation measured with


# one value per model, whatever attribution attack (certified: Lipschitz models only)
ACCURACY_METRICS = ("natural_accuracy", "adversarial_accuracy", "certified_accuracy_l2", "certified_accuracy_linf")
COUNT_METRICS = ("images_scored", "images_unqualified", "images_unmoved", "images_support_covered")


def accuracy_rows(identity: RunIdentity, n: int, natural_pct: float, adversarial_pct: float | None,
                  intervals: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Rows for natural accuracy and (if measured) accuracy under attack, in percent of `n` images, with their
    intervals (`intervals`: metric -> (low, high) in percent) where given."""
    metrics = [("natural_accuracy", natural_pct)]
    if adversarial_pct is not None:
        metrics.append(("adversarial_accuracy", adversarial_pct))
    base, bounds = asdict(identity), intervals or {}
    rows = [{**base, "metric": metric, "value": value, "unit": "%", "n": n,
             **dict(zip(("low", "high"), bounds.get(metric, ()), strict=False))} for metric, value in metrics]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def attribution_rows(identity: RunIdentity, per_image: pd.DataFrame, metrics: list[Metric],
                     bootstrap: Bootstrap = NO_INTERVALS) -> pd.DataFrame:
    """Rows of an attribution attack over the scored (correctly classified) images, one per metric of `metrics`.

    Reference accounting: every scored image, an image with no counted iterate scoring identical maps' value (in
    percent for metrics in %). Strict accounting (`<metric>_strict`): only the images with a counted iterate. Counts
    say how many images were scored, had no counted iterate, never moved, or had their whole nonzero saliency inside
    the attacked top-k. Each mean has its bootstrap interval over the images it averages (`bootstrap`).
    """
    scored = len(per_image)
    qualified = per_image[per_image["qualified"].astype(bool)]
    base = asdict(identity)
    rows = []
    for strict, images in ((False, per_image), (True, qualified)):
        for metric in metrics:
            low, high = bootstrap.interval(images[metric.column], metric.scale)
            rows.append({**base, "metric": metric.column + ("_strict" if strict else ""), "unit": metric.unit,
                         "value": float(metric.scale * images[metric.column].mean()), "n": len(images),
                         "low": low, "high": high})
    counts = [("images_scored", scored), ("images_unqualified", scored - len(qualified)),
              ("images_unmoved", int((~per_image["moved"].astype(bool)).sum())),
              ("images_support_covered", int(per_image["support_covered"].astype(bool).sum()))]
    rows += [{**base, "metric": m, "value": float(v), "unit": "count", "n": scored} for m, v in counts]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def attack_key(description: str) -> str:
    """What tells two attacks apart in a report: the attack's description up to its settings ('topk of ig(100)',
    'random_sign of gradcam', 'pgd'); of an older combined description ('pgd ...; topk ...') its last part."""
    parts = [part for part in description.split("; ") if not part.startswith("certified at")]  # a certificate
    return (parts or [description])[-1].split(" eps=")[0].strip()                                # is not an attack


class MeanMetric(Protocol):
    """What `image_mean_rows` reads of a stability or faithfulness metric."""

    @property
    def column(self) -> str: ...

    unit: str


def image_mean_rows(identity: RunIdentity, per_image: pd.DataFrame, metrics: Sequence[MeanMetric],
                    bootstrap: Bootstrap = NO_INTERVALS) -> pd.DataFrame:
    """The mean of each metric's column over the images where it is defined (n: how many), with its bootstrap
    interval, and the images scored: the rows of the stability and faithfulness metrics."""
    rows = [{**asdict(identity), "metric": metric.column, "value": float(per_image[metric.column].mean()),
             "unit": metric.unit, "n": int(per_image[metric.column].notna().sum()),
             **dict(zip(("low", "high"), bootstrap.interval(per_image[metric.column]), strict=True))}
            for metric in metrics]
    rows.append({**asdict(identity), "metric": "images_scored", "value": float(len(per_image)), "unit": "count",
                 "n": len(per_image)})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
