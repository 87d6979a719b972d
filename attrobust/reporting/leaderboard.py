"""`attrobust leaderboard DIR`: the entries (`entry.json`, reporting/entry.py) under DIR ranked on one static page.

Entries are ranked together only when their protocol fingerprints are equal; each fingerprint gets a board of its own.
Two entries of one model (its run id) under one fingerprint (an evaluation under PGD, another under AutoAttack) stand on
one line. A line per model: method, architecture, seed, NA, accuracy under each prediction attack, every attribution
measure, certified accuracy where defined, training time; each number `mean ± half-width` of its 95 % interval over the
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
from attrobust.reporting.entry import ENTRY_FILE, SCHEMA
from attrobust.reporting.latex import latex_table

REQUIRED = ("run_id", "method", "architecture", "dataset", "fingerprint", "accuracy", "measures")
TITLE = "Attributional robustness leaderboard"
NOTE = ("Each number: mean ± half-width of its 95 % bootstrap interval over the test images of the evaluation. "
        "Models are ranked together only under one protocol fingerprint (images, attack on explanations, explainer, "
        "measures, eps). Click a heading to sort.")


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


def boards(entries: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, list[Line]]:
    """Lines per protocol fingerprint, entries of one model merged (later files add to earlier ones)."""
    grouped: dict[str, dict[str, Line]] = {}
    for folder, entry in entries:
        lines = grouped.setdefault(entry["fingerprint"], {})
        line = lines.setdefault(str(entry["run_id"]), Line(entry, folder))
        line.accuracy.update({k: v for k, v in entry["accuracy"].items() if v is not None})
        line.measures.update(entry["measures"])
        if entry.get("gallery") and not line.entry.get("gallery"):
            line.entry, line.folder = {**line.entry, "gallery": entry["gallery"]}, folder
    return {fingerprint: list(lines.values()) for fingerprint, lines in grouped.items()}


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
    interval = "" if math.isnan(half) else f"95 % interval [{low:.{digits}f}, {high:.{digits}f}], "
    return {"key": key, "value": repr(float(value)), "shown": shown, "text": False,
            "about": f"{interval}n = {scored.get('n'):.0f}" if scored.get("n") is not None else interval}


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


def render(entries: Sequence[tuple[Path, dict[str, Any]]], out: Path) -> list[Path]:
    """index.html (with its gallery), leaderboard.md and leaderboard.tex in `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rendered, markdown, latex, galleries = [], [f"# {TITLE}\n\n{NOTE}\n"], [], []
    for number, (fingerprint, lines) in enumerate(boards(entries).items(), 1):
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
                galleries.append({"title": f"{line.entry['method']} ({line.entry['architecture']}, seed "
                                           f"{line.entry.get('seed')})", "src": target.relative_to(out).as_posix()})
    environment = jinja2.Environment(loader=jinja2.PackageLoader("attrobust.reporting", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.get_template("leaderboard.html.j2").render(title=TITLE, note=NOTE, boards=rendered,
                                                                   galleries=galleries)
    written = [out / "index.html", out / "leaderboard.md", out / "leaderboard.tex"]
    write_text_atomic(written[0], page)
    write_text_atomic(written[1], "\n".join(markdown))
    write_text_atomic(written[2], "\n".join(latex))
    return written
