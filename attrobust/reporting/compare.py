"""Paired comparisons: `attrobust compare A B [C ...]`, evaluations of models on the same images, pair by pair.

Each argument is a folder holding one whole evaluation (`evaluation.json` and its per-image files: an `evaluate`
run, or a merge of shards). Two evaluations pair only when they measured alike: the same test images in the same
order, and the same evaluation settings (attacks, explainer, measures, protocol; the `evaluation` identity of
reporting/settings.py); otherwise one line names the first setting that differs. For every pair and every measure
(NA, AA, and each attribution measure of the attack on explanations) on the images both scored; an attribution
measure as the per-image file holds it (the reference accounting: an image without a counted iterate scores identical
maps' value), so that both models are compared on the same images:
- the paired difference of the means (B - A, in the table's units) with its bootstrap interval over images
  (reporting/intervals.py, seeded);
- a paired test: McNemar's exact test for accuracy (a binomial test on the images only one model gets right) and
  Wilcoxon's signed-rank test for a measure (scipy), two-sided;
- Holm's correction over every test shown (so that many pairs and measures do not manufacture a difference); a
  difference is `resolved` when its corrected p is below 0.05;
- for one that is not, the images that would resolve it at the observed mean and spread of the differences (80 %
  power, two-sided 5 %, normal approximation): `images_needed`.

A method given as several evaluations joined by commas (`A0,A1,A2`: one model per training seed) pairs with another
given alike seed by seed, in the order given (both need the same number of seeds). Its difference is the mean over
seeds and images; its interval the hierarchical bootstrap (seeds, then images: reporting/intervals.py), which carries
the spread between training seeds; its test Wilcoxon's on each image's difference averaged over the seeds (for
accuracy too: the averages are no longer 0 or 1), which treats the images as the units given these seeds. Such a
difference is `resolved` only when its Holm-corrected p is below 0.05 and its interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from attrobust.errors import AttrobustError
from attrobust.metrics import METRICS, metric_name_of
from attrobust.reporting.evaluation import EVALUATION_FILE, EvaluationRecord, PerImage, read_evaluation
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.settings import threat_key

ALPHA = 0.05
POWER = 0.8
COLUMNS = ["a", "b", "measure", "seeds", "images", "mean_a", "mean_b", "difference", "low", "high", "test", "p_value",
           "p_holm", "resolved", "images_needed"]
ACCURACY = {"natural_accuracy": "correct", "adversarial_accuracy": "robust"}


@dataclass(frozen=True)
class Evaluated:
    """One evaluation to compare: its folder, record and per-image rows."""

    label: str
    record: EvaluationRecord
    per_image: PerImage


@dataclass(frozen=True)
class Method:
    """One side of a comparison: one evaluation, or one per training seed (paired with another method's in order)."""

    label: str
    seeds: tuple[Evaluated, ...]


def read_method(argument: str) -> Method:
    """A method from its command-line argument: an evaluation folder, or several joined by commas (its seeds)."""
    folders = [Path(argument)] if Path(argument).is_dir() else [Path(part) for part in argument.split(",") if part]
    if not folders:
        raise AttrobustError(f"{argument!r} names no evaluation folder")
    if len(set(folders)) < len(folders):
        raise AttrobustError(f"{argument} lists a folder twice; give each seed's evaluation once")
    return Method(",".join(str(folder) for folder in folders), tuple(read_evaluated(folder) for folder in folders))


def read_evaluated(folder: Path) -> Evaluated:
    if not (folder / EVALUATION_FILE).is_file():
        raise AttrobustError(f"{folder} holds no evaluation ({EVALUATION_FILE}); give the folder an `attrobust "
                             f"evaluate` wrote (<run>/evaluate/<time>) or a merge of shards")
    record, per_image = read_evaluation(folder)
    if record.is_shard:
        raise AttrobustError(f"{folder} is shard {record.shard} of {record.num_shards}: merge the shards first "
                             f"(attrobust merge <their folder>) and compare the merge")
    return Evaluated(str(folder), record, per_image)


def check_pairable(a: Evaluated, b: Evaluated) -> None:
    """One line when `a` and `b` did not measure alike (images, then the first evaluation setting that differs)."""
    if a.record.images != b.record.images:
        raise AttrobustError(f"cannot pair {a.label} and {b.label}: they evaluated different test images "
                             f"({len(a.record.images)} and {len(b.record.images)}, or in another order); evaluate "
                             f"both with the same eval.num_examples / indices / classes / sample and seed")
    ran = [[identity["attack"] for _, identity in each.record.parts.get("attacks", [])] for each in (a, b)]
    if ran[0] != ran[1]:
        raise AttrobustError(f"cannot pair {a.label} and {b.label}: their attacks on explanations ran differently "
                             f"({'; '.join(ran[0]) or 'none'} vs {'; '.join(ran[1]) or 'none'}), e.g. along an "
                             f"estimated direction on a model without a smooth counterpart")
    mine, theirs = measured_with(a.record), measured_with(b.record)
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) == theirs.get(key):
            continue
        raise AttrobustError(f"cannot pair {a.label} and {b.label}: their evaluations differ in {key} "
                             f"({mine.get(key)} vs {theirs.get(key)}); evaluate both with the same settings")


def measured_with(record: EvaluationRecord) -> dict[str, object]:
    """What an evaluation measured with, whole: its own settings, and the dataset and threat model it ran on (the
    trained model's, overlaid with those the evaluation changed: the `evaluation` identity keeps only the latter)."""
    trained = {threat_key(key): value for key, value in record.settings.get("setting", {}).items()
               if key.startswith(("dataset.", "threat."))}
    return {**trained, **{threat_key(key): value for key, value in record.settings.get("evaluation", {}).items()}}


def paired_values(evaluated: Evaluated) -> dict[str, pd.Series]:
    """Per measure, its per-image values indexed by test image: accuracy in %, the attack's measures as rows show
    them (a measure in % times 100)."""
    values: dict[str, pd.Series] = {}
    accuracy = evaluated.per_image.get("accuracy")
    if accuracy is not None:
        for metric, column in ACCURACY.items():
            if column in accuracy:
                values[metric] = 100.0 * accuracy.set_index("index")[column].astype(float)
    measures, lines = evaluated.per_image.get("attacks"), evaluated.record.parts.get("attacks", [])
    if measures is not None and lines:
        main = measures[measures["attack"] == lines[0][0]].set_index("index")
        for column in main.columns:
            name = metric_name_of(column)
            if name is not None:
                scale = 100.0 if METRICS.get(name).unit == "%" else 1.0  # type: ignore[attr-defined]
                values[column] = scale * main[column].astype(float)
    return values


def compare(methods: list[Method], bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """The paired comparison of every pair of `methods`, one row per pair and measure (module doc)."""
    first = methods[0].seeds[0]
    for method in methods:
        for later in method.seeds:
            check_pairable(first, later)
        if len(method.seeds) != len(methods[0].seeds):
            raise AttrobustError(f"cannot pair {methods[0].label} and {method.label}: {len(methods[0].seeds)} and "
                                 f"{len(method.seeds)} seeds; give every method the same seeds, in the same order")
    values = [[paired_values(each) for each in method.seeds] for method in methods]
    rows = []
    for i, a in enumerate(methods):
        for j in range(i + 1, len(methods)):
            for measure in (m for m in values[i][0] if all(m in seed for seed in values[i] + values[j])):
                both = pd.concat([seed[measure] for seed in values[i] + values[j]], axis=1, join="inner").dropna()
                seeds = len(a.seeds)
                pair = both.to_numpy().T.reshape(2, seeds, len(both))
                row = paired(pair[0, 0], pair[1, 0], measure in ACCURACY, bootstrap) if seeds == 1 else \
                    paired_over_seeds(pair[0], pair[1], bootstrap)
                rows.append({"a": a.label, "b": methods[j].label, "measure": measure, "seeds": seeds, **row})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["p_holm"] = holm(table["p_value"].to_numpy(float))
    excludes_zero = (table["low"] > 0) | (table["high"] < 0)  # NaN bounds (no interval) exclude nothing
    table["resolved"] = (table["p_holm"] < ALPHA) & (excludes_zero | (table["seeds"] == 1))
    table.loc[table["resolved"], "images_needed"] = np.nan
    return table


def paired_over_seeds(a: np.ndarray, b: np.ndarray, bootstrap: Bootstrap) -> dict[str, object]:
    """The paired difference b - a of two methods' seeds (seeds x images, paired by seed and image): its mean, the
    hierarchical bootstrap interval, Wilcoxon's test on each image's difference averaged over the seeds."""
    if a.shape[1] == 0:
        return {"images": 0, "test": "none", "p_value": 1.0}
    difference = b - a
    per_image = difference.mean(axis=0)
    low, high = bootstrap.hierarchical(difference)
    p_value = stats.wilcoxon(per_image).pvalue if np.any(per_image != 0) else 1.0
    return {"images": a.shape[1], "mean_a": a.mean(), "mean_b": b.mean(), "difference": difference.mean(),
            "low": low, "high": high, "test": "Wilcoxon (seed means)", "p_value": float(p_value),
            "images_needed": images_needed(per_image)}


def paired(a: np.ndarray, b: np.ndarray, binary: bool, bootstrap: Bootstrap) -> dict[str, object]:
    """The paired difference b - a with its interval, its test and the images that would resolve it."""
    if len(a) == 0:
        return {"images": 0, "test": "none", "p_value": 1.0}
    difference = b - a
    low, high = bootstrap.interval(difference)
    if binary:  # McNemar's exact test: of the images only one model gets right, which one
        only_b, only_a = int(((b > 0) & (a == 0)).sum()), int(((a > 0) & (b == 0)).sum())
        p_value = stats.binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        test = "McNemar"
    else:
        p_value = stats.wilcoxon(difference).pvalue if np.any(difference != 0) else 1.0
        test = "Wilcoxon"
    return {"images": len(a), "mean_a": a.mean(), "mean_b": b.mean(), "difference": difference.mean(), "low": low,
            "high": high, "test": test, "p_value": float(p_value), "images_needed": images_needed(difference)}


def images_needed(difference: np.ndarray) -> float:
    """Images for a paired test to resolve a mean difference like this one (80 % power, two-sided 5 %)."""
    spread, mean = difference.std(ddof=1) if len(difference) > 1 else math.nan, abs(difference.mean())
    if not mean or math.isnan(spread):
        return math.nan
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)
    return float(math.ceil((z * spread / mean) ** 2))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of `p_values` (family-wise error over all of them)."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p_values[order])) if m else order
    out = np.empty(m)
    out[order] = adjusted
    return out


def compare_markdown(table: pd.DataFrame) -> str:
    """The comparison for reading (`compare_shown`), with what `resolved` and `images needed` mean."""
    note = ("Resolved: Holm-corrected p < 0.05 over every test in this table (over several seeds: and the "
            "interval, over seeds and images, excludes 0). Images needed: for an unresolved "
            "difference, the images a paired test would need at its observed mean and spread (80 % power). "
            "Attribution measures in the reference accounting (every image both models scored; one without a "
            "counted iterate scores identical maps), so that the two are compared on the same images.")
    return compare_shown(table).to_markdown(index=False, disable_numparse=True) + "\n\n" + note + "\n"


def compare_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as strings: each difference as `difference [low, high]`, resolved ones marked."""
    return pd.DataFrame({
        "A": table["a"], "B": table["b"], "measure": table["measure"], "seeds": table["seeds"],
        "images": table["images"],
        "A mean": table["mean_a"].map(_number), "B mean": table["mean_b"].map(_number),
        "B - A [95 % interval]": [f"{_number(d)} [{_number(lo)}, {_number(hi)}]" for d, lo, hi in
                                  zip(table["difference"], table["low"], table["high"], strict=True)],
        "test": table["test"], "p (Holm)": table["p_holm"].map(lambda p: f"{p:.3g}"),
        "resolved": table["resolved"].map(lambda r: "yes" if r else "no"),
        "images needed": table["images_needed"].map(lambda n: "" if pd.isna(n) else f"{int(n)}")})


def _number(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4g}"
