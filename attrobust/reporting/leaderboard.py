"""`attrobust leaderboard DIR`: the entries (`entry.json`, reporting/entry.py) under DIR ranked on one static page.

Entries are ranked together only when their protocol fingerprints are equal; each fingerprint gets a board of its own.
Two entries of one model (its run id) under one fingerprint (an evaluation under PGD, another under AutoAttack) stand on
one line. A line per model: method, architecture, seed, NA, accuracy under each prediction attack, every attribution
measure, certified accuracy where defined, training time; each number `mean ± half-width` of its interval over the
images (the interval itself and n in the cell's tooltip). Written to OUT: `index.html` (one file with its gallery images
beside it: sortable by clicking a heading, or with `#sort=<key>` in the address; no server needed), `leaderboard.md`,
`leaderboard.tex`. The page is rendered with Jinja2 (autoescaped).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from attrobust.atomic import write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.reporting.entry import ENTRY_FILE, FINGERPRINT_DEFINITION, SCHEMA, fingerprint_definition
from attrobust.reporting.intervals import over_seeds
from attrobust.reporting.latex import latex_table

REQUIRED = ("run_id", "method", "architecture", "dataset", "fingerprint", "accuracy", "measures")
TITLE = "Attributional robustness leaderboard"
NOTE = ("Each number: mean ± half-width of its interval over the test images of the evaluation (at the entry's "
        "eval.confidence, 95 % by default: Wilson's score interval for accuracies, a percentile bootstrap for "
        "measures). "
        "Models are ranked together only under one protocol fingerprint (images, attack on explanations, explainer, "
        "measures, eps). Click a heading to sort.")

POOLED_NOTE = (" A line per method: each number the mean over its seeds ± the half-width of Student's t 95 % interval "
               "over the seeds' values (n = seeds; a method with one seed keeps its interval over images).")


@dataclass
class Line:
    """One model on one board: its entries' numbers merged."""

    entry: dict[str, Any]
    folder: Path
    accuracy: dict[str, Any] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)


def find_entries(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every entry under `directory`, checked (one line naming the file and what is wrong)."""
    found = []
    for path in sorted(directory.rglob(ENTRY_FILE)):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise AttrobustError(f"unreadable leaderboard entry {path}: {str(error).splitlines()[0]}") from None
        problem = entry_problem(entry)
        if problem:
            raise AttrobustError(f"{path} is not a leaderboard entry of schema {SCHEMA} ({problem}); evaluate the "
                                 f"model again")
        found.append((path.parent, entry))
    if not found:
        raise AttrobustError(f"no {ENTRY_FILE} under {directory}: `attrobust evaluate` writes one per evaluation")
    return found


def entry_problem(entry: Any) -> str:
    """What makes `entry` unusable ('' when nothing): a missing key, another schema, a value of the wrong type."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    if entry.get("schema") != SCHEMA:
        return f"schema {entry.get('schema')}"
    numbers = (int, float, type(None))
    scored = [*entry["accuracy"].values(), *entry["measures"].values()] if isinstance(entry["accuracy"], dict) and \
        isinstance(entry["measures"], dict) else None
    if scored is None or not all(value is None or (isinstance(value, dict) and all(
            isinstance(value.get(key), numbers) for key in ("value", "low", "high", "n"))) for value in scored):
        return "accuracy and measures must map names to {value, low, high, n} numbers"
    if not all(isinstance(m.get("heading"), str) and isinstance(m.get("higher_is_better"), bool)
               for m in entry["measures"].values()):
        return "each measure needs a heading and higher_is_better"
    if not isinstance(entry.get("gallery"), (str, type(None))) or not isinstance(entry.get("training_seconds"),
                                                                                 numbers):
        return "gallery must be a file name and training_seconds a number"
    return ""


def older_fingerprints(entries: Sequence[tuple[Path, dict[str, Any]]]) -> str | None:
    """A note naming the entries fingerprinted under an earlier definition than others that describe the same protocol
    (dataset, attack, explainer, protocol, eps, number of images) when the newer ones bring a fingerprint no earlier
    entry has and the earlier ones have none of the newer's: the same protocol may then stand on two boards. None when
    there are no such entries."""
    alike: dict[tuple[str, ...], list[tuple[Path, dict[str, Any]]]] = {}
    for folder, entry in entries:
        key = tuple(str(entry.get(name)) for name in ("dataset", "attack", "explainer", "protocol", "eps", "images"))
        alike.setdefault(key, []).append((folder, entry))
    older: list[tuple[Path, int]] = []
    for group in alike.values():
        newest = max(fingerprint_definition(entry) for _, entry in group)
        newer = {str(entry["fingerprint"]) for _, entry in group if fingerprint_definition(entry) == newest}
        earlier = [(folder, entry) for folder, entry in group if fingerprint_definition(entry) < newest]
        if newer - {str(entry["fingerprint"]) for _, entry in earlier}:  # a newer hash no earlier entry has
            older += [(folder, fingerprint_definition(entry)) for folder, entry in earlier
                      if str(entry["fingerprint"]) not in newer]
    if not older:
        return None
    return (f"{len(older)} of the {len(entries)} entries (e.g. {older[0][0]}) were fingerprinted by an earlier "
            f"attrobust (fingerprint definition {min(number for _, number in older)}, now {FINGERPRINT_DEFINITION}) "
            f"and describe the same protocol as newer ones with another fingerprint: they stand on boards of their "
            f"own; evaluate them again to rank them with the others")


def boards(entries: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, list[Line]]:
    """Lines per protocol fingerprint, entries of one model merged (later files add to earlier ones). An accuracy-only
    entry (no attribution measures: `attributions=false`) joins its model's line on every board whose entry for that
    model has its images fingerprint (the same dataset, test images and threat model); else it has a board of its
    own."""
    grouped: dict[str, dict[str, Line]] = {}
    joining = [(folder, entry) for folder, entry in entries
               if not entry["measures"] and entry.get("images_fingerprint")]
    for folder, entry in entries:
        if not any(entry is other for _, other in joining):
            merge(grouped.setdefault(entry["fingerprint"], {}), folder, entry)
    for folder, entry in joining:
        homes = [lines for lines in grouped.values() if str(entry["run_id"]) in lines and
                 lines[str(entry["run_id"])].entry.get("images_fingerprint") == entry["images_fingerprint"]]
        for lines in homes or [grouped.setdefault(entry["fingerprint"], {})]:
            merge(lines, folder, entry)
    return {fingerprint: list(lines.values()) for fingerprint, lines in grouped.items()}


def merge(lines: dict[str, Line], folder: Path, entry: dict[str, Any]) -> None:
    """Add `entry` to its model's line in `lines` (a new line when it is the model's first)."""
    line = lines.setdefault(str(entry["run_id"]), Line(entry, folder))
    line.accuracy.update({k: v for k, v in entry["accuracy"].items() if v is not None})
    line.measures.update(entry["measures"])
    if entry.get("gallery") and not line.entry.get("gallery"):
        line.entry, line.folder = {**line.entry, "gallery": entry["gallery"]}, folder


def pool_seeds(lines: list[Line]) -> list[Line]:
    """One line per method, architecture and settings (but the seed): each number the mean of its models' (the seeds')
    values, with Student's t interval over them (n = the number of seeds); a method of one model keeps that model's
    interval over images. Two models of one seed are refused."""
    grouped: dict[tuple[str, str, str], list[Line]] = {}
    for line in lines:  # one method: its preset (or objective), architecture and settings but the seed
        key = (str(line.entry["method"]), str(line.entry["architecture"]), str(line.entry.get("setting_hash")))
        grouped.setdefault(key, []).append(line)
    pooled = []
    for models in grouped.values():
        seeds_seen = [line.entry.get("seed") for line in models]
        if len(set(map(str, seeds_seen))) < len(seeds_seen):
            raise AttrobustError(f"leaderboard --by method: {models[0].entry['method']} has two models of one seed "
                                 f"({', '.join(str(line.folder) for line in models)}); keep one evaluation per seed")
        if len(models) == 1:
            pooled.append(models[0])
            continue
        seeds = ", ".join(str(line.entry.get("seed")) for line in models)
        seconds = [line.entry.get("training_seconds") for line in models]
        known = [float(value) for value in seconds if value is not None]
        shown = next((line for line in models if line.entry.get("gallery")), models[0])  # whose maps the page shows
        entry = {**models[0].entry, "run_id": f"{models[0].entry['method']} ({models[0].entry['architecture']})",
                 "seed": seeds, "training_seconds": sum(known) / len(known) if known else None,
                 "gallery": shown.entry.get("gallery"), "gallery_seed": shown.entry.get("seed")}
        pooled.append(Line(entry, shown.folder, over_models([line.accuracy for line in models]),
                           over_models([line.measures for line in models])))
    return pooled


def over_models(numbers: list[dict[str, Any]]) -> dict[str, Any]:
    """Each name's mean over the models that have it and its t interval over them ("seeds": how many)."""
    pooled = {}
    for name in dict.fromkeys(name for scored in numbers for name in scored):
        values = [float(scored[name]["value"]) for scored in numbers
                  if name in scored and scored[name].get("value") is not None]
        if not values:
            continue
        low, high = over_seeds(values)
        first = next(scored[name] for scored in numbers if name in scored)
        pooled[name] = {**first, "value": sum(values) / len(values), "low": None if math.isnan(low) else low,
                        "high": None if math.isnan(high) else high, "n": len(values), "seeds": True}
    return pooled


def columns_of(lines: list[Line]) -> list[dict[str, Any]]:
    """The board's columns: what describes a model, then every number any of its lines has."""
    columns = [{"key": key, "heading": heading, "text": True, "better": "text", "help": ""}
               for key, heading in (("method", "method"), ("architecture", "architecture"), ("seed", "seed"))]
    accuracy = list(dict.fromkeys(key for line in lines for key in line.accuracy))
    for key in ["natural", *[k for k in accuracy if k != "natural" and not k.startswith("certified")],
                *[k for k in accuracy if k.startswith("certified")]]:
        if key in accuracy:
            heading = "NA (%)" if key == "natural" else f"{key.replace('_', ' ')} (%)" if key.startswith(
                "certified") else f"AA {key} (%)"
            columns.append({"key": f"accuracy.{key}", "heading": heading, "text": False, "better": "higher",
                            "help": "accuracy in % of the test images", "digits": 2})
    for key in dict.fromkeys(key for line in lines for key in line.measures):
        first = next(line.measures[key] for line in lines if key in line.measures)
        percent = key.startswith(("topk_intersection", "lens"))
        columns.append({"key": f"measures.{key}", "heading": first["heading"] + (" (%)" if percent else ""),
                        "text": False, "better": "higher" if first["higher_is_better"] else "lower",
                        "help": key, "digits": 2 if percent else 4})
    columns.append({"key": "training_seconds", "heading": "training (s)", "text": False, "better": "lower",
                    "help": "training time of the model", "digits": 0})
    return columns


def cell(line: Line, column: dict[str, Any]) -> dict[str, Any]:
    """A cell: its raw value (sorting, tests), and what is shown."""
    key = column["key"]
    if column["text"]:
        value = line.entry.get(key)
        return {"key": key, "value": "" if value is None else str(value), "shown": "" if value is None else str(value),
                "text": True}
    if key == "training_seconds":
        seconds = line.entry.get("training_seconds")
        return {"key": key, "value": "" if seconds is None else repr(float(seconds)), "text": False,
                "shown": "n/a" if seconds is None else f"{seconds:.0f}"}
    group, name = key.split(".", 1)
    scored = (line.accuracy if group == "accuracy" else line.measures).get(name)
    if not scored or scored.get("value") is None:
        return {"key": key, "value": "", "shown": "n/a", "text": False}
    value, low, high, digits = scored["value"], scored.get("low"), scored.get("high"), column["digits"]
    half = (high - low) / 2 if low is not None and high is not None else math.nan
    shown = f"{value:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")
    level = 95.0 if scored.get("seeds") else 100 * float(line.entry.get("confidence") or 0.95)
    interval = "" if math.isnan(half) else f"{level:g} % interval [{low:.{digits}f}, {high:.{digits}f}], "
    unit = " seeds (Student's t)" if scored.get("seeds") else ""
    return {"key": key, "value": repr(float(value)), "shown": shown, "text": False,
            "about": f"{interval}n = {scored.get('n'):.0f}{unit}" if scored.get("n") is not None else interval}


def board_frame(lines: list[Line], columns: list[dict[str, Any]]) -> pd.DataFrame:
    """The board as strings (Markdown, LaTeX)."""
    return pd.DataFrame([[cell(line, column)["shown"] for column in columns] for line in lines],
                        columns=[column["heading"] for column in columns])


def describe_board(lines: list[Line]) -> tuple[str, str]:
    first = lines[0].entry
    title = f"{first['dataset']}: {first.get('attack') or 'accuracy'}"
    description = (f"{first.get('images')} test images, explainer {first.get('explainer')}, protocol "
                   f"{first.get('protocol')}, eps {first.get('eps')}; {len(lines)} model(s)")
    return title, description


def render(entries: Sequence[tuple[Path, dict[str, Any]]], out: Path, by: str = "model") -> list[Path]:
    """index.html (with its gallery), leaderboard.md and leaderboard.tex in `out`, a line per model or (`by="method"`)
    per method with its seeds pooled; returns the files written."""
    if by not in ("model", "method"):
        raise AttrobustError(f"leaderboard --by {by!r}: choose model or method")
    out.mkdir(parents=True, exist_ok=True)
    note = NOTE + (POOLED_NOTE if by == "method" else "")
    rendered, markdown, latex, galleries = [], [f"# {TITLE}\n\n{note}\n"], [], []
    for number, (fingerprint, models) in enumerate(boards(entries).items(), 1):
        lines = pool_seeds(models) if by == "method" else models
        columns = columns_of(lines)
        title, description = describe_board(lines)
        rows = [{"id": f"{line.entry['run_id']}", "cells": [cell(line, column) for column in columns]}
                for line in lines]
        rendered.append({"title": title, "fingerprint": fingerprint, "description": description, "columns": columns,
                         "rows": rows})
        frame = board_frame(lines, columns)
        markdown.append(f"## {title}\n\nProtocol `{fingerprint}`: {description}\n\n"
                        f"{frame.to_markdown(index=False, disable_numparse=True)}\n")
        latex.append(f"% {title} (protocol {fingerprint})\n{latex_table(frame)}")
        for line in lines:
            gallery = line.entry.get("gallery")
            source = line.folder / gallery if gallery else None
            if source is not None and source.is_file() and source.resolve().is_relative_to(line.folder.resolve()):
                target = out / "gallery" / f"{number}-{len(galleries)}.png"
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(source, target)
                seed = line.entry.get("gallery_seed", line.entry.get("seed"))  # a method's line: one seed's maps
                galleries.append({"title": f"{line.entry['method']} ({line.entry['architecture']}, seed {seed})",
                                  "src": target.relative_to(out).as_posix()})
    environment = jinja2.Environment(loader=jinja2.PackageLoader("attrobust.reporting", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.get_template("leaderboard.html.j2").render(title=TITLE, note=note, boards=rendered,
                                                                   galleries=galleries)
    written = [out / "index.html", out / "leaderboard.md", out / "leaderboard.tex"]
    write_text_atomic(written[0], page)
    write_text_atomic(written[1], "\n".join(markdown))
    write_text_atomic(written[2], "\n".join(latex))
    return written
