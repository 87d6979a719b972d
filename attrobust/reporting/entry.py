"""A leaderboard entry: one JSON file per evaluated model (`entry.json`, written by `evaluate` beside its results), in
the spirit of RobustBench's entry files: what was evaluated (method, architecture, dataset, threat model, explainer,
protocol and its fingerprint) and what it scored (NA, accuracy under each prediction attack, each attribution measure,
certified accuracy where defined, each with its interval and n), with the training cost, commit and config hash.
`attrobust leaderboard DIR` (reporting/leaderboard.py) ranks the entries it finds.

The protocol fingerprint is what must be equal for two entries to be ranked together: the dataset (its settings, not
where its files are), the test images, the attack on explanations and its settings, the explainer, the measures, the
random controls, the protocol and the threat model. The prediction attack is not part of it (NA and AA under PGD and
under AutoAttack of one model, from two evaluations, stand on one line). The images fingerprint (the dataset, the test
images and the threat model) is what an accuracy-only evaluation (`attributions=false`) must share with a board's line
of the same model to join it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from attrobust.atomic import write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.provenance import config_hash
from attrobust.reporting.settings import dataset_settings

ENTRY_FILE = "entry.json"
SHARD_ENTRY_FILE = "entry.shard.json"  # a shard's description of its entry-to-be, which `attrobust merge` completes
SCHEMA = 1
# What the fingerprints hash: raised whenever protocol_fingerprint or images_fingerprint hashes something else, so that
# the leaderboard can say why an entry of the same protocol stands on a board of its own (entries without it: 1; 2
# since the confidence level and the attacks as they ran were added)
FINGERPRINT_DEFINITION = 2
BUDGET_KEYS = ("direction_points", "selection_points", "patience")  # attacks/budget.py
PROTOCOL_EVAL_KEYS = ("num_examples", "indices", "classes", "sample", "metrics", "baselines", "protocol", "confidence")


def protocol_fingerprint(images: Sequence[int], plain: Mapping[str, Any], as_run: Sequence[str] = ()) -> str:
    """The hash of the protocol (module doc); `as_run`: the attacks on explanations as they ran (their descriptions),
    which may differ from the configuration (a model without a smooth counterpart is attacked along an estimated
    direction)."""
    evaluation = plain.get("eval", {})
    attack = plain.get("attribution_attack") if plain.get("attributions", True) else None
    if isinstance(attack, Mapping):  # a budget knob left off is not part of the protocol (as before it existed)
        attack = {key: value for key, value in attack.items() if not (key in BUDGET_KEYS and value is None)}
    what = {"images": list(images), "eval": {key: evaluation.get(key) for key in PROTOCOL_EVAL_KEYS},
            "as_run": list(as_run), "attribution_attack": attack,
            "explainer": plain.get("explainer"), "dataset": dataset_settings(plain.get("dataset") or {}),
            "threat": plain.get("threat")}
    return config_hash(what)


def images_fingerprint(images: Sequence[int], plain: Mapping[str, Any]) -> str:
    """The hash of what NA and AA are measured on (the dataset's settings, the test images and the threat model) and
    of the intervals' level."""
    return config_hash({"images": list(images), "dataset": dataset_settings(plain.get("dataset") or {}),
                        "threat": plain.get("threat"), "confidence": (plain.get("eval") or {}).get("confidence")})


def fingerprint_definition(entry: Mapping[str, Any]) -> int:
    """The fingerprint definition an entry was written under (1 for entries written before it was recorded)."""
    value = entry.get("fingerprint_definition", 1)
    return value if isinstance(value, int) else 1


def scored(rows: pd.DataFrame, metric: str) -> dict[str, float] | None:
    """{value, low, high, n} of `metric` in `rows` (None when absent); NaN as None in JSON."""
    found = rows[rows["metric"] == metric]
    if found.empty:
        return None
    row = found.iloc[-1]
    return {key: _plain(row.get(key)) for key in ("value", "low", "high", "n")}


def _plain(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def entry(rows: pd.DataFrame, lines: Mapping[str, list[tuple[str, dict[str, Any]]]], described: Mapping[str, Any],
          headings: Mapping[str, tuple[str, bool]]) -> dict[str, Any]:
    """The entry of one evaluation: its result `rows`, the identity of each part's lines (evaluation.json's `parts`),
    `described` (method, architecture, dataset, seed, threat, explainer, protocol, fingerprint, cost, commit, ...),
    and `headings` (measure column -> its heading and whether higher is better)."""
    accuracy: dict[str, Any] = {}
    for _, identity in lines.get("accuracy", []):
        mine = rows[rows["attack"] == identity["attack"]]
        accuracy["natural"] = scored(mine, "natural_accuracy")
        attack = str(identity["attack"]).split("; ")[0]  # its full description: PGD-10 is not PGD-100
        accuracy[attack] = scored(mine, "adversarial_accuracy")
        certified = {key: scored(mine, f"certified_accuracy_{key}") for key in ("l2", "linf")}
        accuracy.update({f"certified_{key}": value for key, value in certified.items() if value is not None})
    measures = {}
    attacks = lines.get("attacks", [])
    if attacks:
        mine = rows[rows["attack"] == attacks[0][1]["attack"]]
        for column, (heading, higher_is_better) in headings.items():
            value = scored(mine, column)
            if value is not None:
                measures[column] = {"heading": heading, "higher_is_better": higher_is_better, **value}
    return {"schema": SCHEMA, **described, "accuracy": accuracy, "measures": measures,  # keyed by result-row metric
            "attack": attacks[0][1]["attack"] if attacks else None}


def write_entry(folder: Path, value: Mapping[str, Any]) -> None:
    write_text_atomic(folder / ENTRY_FILE, json.dumps(value, indent=1) + "\n")  # measures in eval.metrics order


def write_shard_description(folder: Path, described: Mapping[str, Any],
                            headings: Mapping[str, tuple[str, bool]]) -> None:
    """A shard's part of the entry its merge will write: what was evaluated, and the measures' headings."""
    text = json.dumps({"described": dict(described), "headings": {k: list(v) for k, v in headings.items()}}, indent=1)
    write_text_atomic(folder / SHARD_ENTRY_FILE, text + "\n")


def write_merged_entry(first_shard: Path, out: Path, rows: pd.DataFrame,
                       lines: Mapping[str, list[tuple[str, dict[str, Any]]]]) -> None:
    """The entry of a merge in `out`, from its first shard's description and the merged result `rows` (none when the
    shards were written before shards described their entry; the merge has removed any earlier entry)."""
    source = first_shard / SHARD_ENTRY_FILE
    if not source.is_file():
        return
    try:
        saved = json.loads(source.read_text(encoding="utf-8"))
        described = {**saved["described"], "gallery": "figure.png" if (out / "figure.png").is_file() else None}
        headings = {key: (str(heading), bool(better)) for key, (heading, better) in saved["headings"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise AttrobustError(f"unreadable shard description {source} ({type(error).__name__}: {error}); evaluate that "
                             f"shard again") from None
    write_entry(out, entry(rows, lines, described, headings))
