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


def attribution_rows(identity: RunIdentity, per_image: pd.DataFrame) -> pd.DataFrame:
    """Rows of an attribution attack over the scored (correctly classified) images.

    Reference accounting: every scored image, an image with no counted iterate scored (1, 1, 1) (IN in percent).
    Strict accounting (`*_strict`): only the images with a counted iterate. Counts say how many images were scored,
    had no counted iterate, never moved, or had their whole nonzero saliency inside the attacked top-k.
    """
    scored = len(per_image)
    qualified = per_image[per_image["qualified"].astype(bool)]
    metrics = [("topk_intersection", 100 * per_image["topk_intersection"].mean(), "%", scored),
               ("kendall", per_image["kendall"].mean(), "", scored),
               ("spearman", per_image["spearman"].mean(), "", scored),
               ("center_shift", per_image["center_shift"].mean(), "px", scored),
               ("topk_intersection_strict", 100 * qualified["topk_intersection"].mean(), "%", len(qualified)),
               ("kendall_strict", qualified["kendall"].mean(), "", len(qualified)),
               ("spearman_strict", qualified["spearman"].mean(), "", len(qualified)),
               ("images_scored", scored, "count", scored),
               ("images_unqualified", scored - len(qualified), "count", scored),
               ("images_unmoved", int((~per_image["moved"].astype(bool)).sum()), "count", scored),
               ("images_support_covered", int(per_image["support_covered"].astype(bool).sum()), "count", scored)]
    base = asdict(identity)
    rows = [{**base, "metric": m, "value": float(v), "unit": u, "n": n} for m, v, u, n in metrics]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
