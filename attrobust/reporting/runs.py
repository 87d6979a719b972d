"""The runs under a folder and their states, for reports.

A run is a folder with `.hydra/overrides.yaml` (written by attrobust when a job's work begins, and at once for every
job of a sweep, so a sweep job killed before it started is still found). Its state is
- `done`: it (or an `evaluate/` / `attack/` folder inside it) has a `results.csv`;
- `failed`: it has `failed.txt` (written when the job stopped with an error; the first line says why);
- `not evaluated`: neither, but a finished `model.pt` (trained with `eval_at_end=false`, no `evaluate` yet): listed
  with the command that evaluates it, as a note rather than a warning;
- `missing`: none of these (killed, preempted and not requeued, or still running);
- `unreadable`: a file it needs cannot be read (an empty or truncated `results.csv`, a broken `overrides.yaml`); the
  reason names the file. Such a run is listed, never counted as done.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from attrobust.reporting.merge import is_finished_shard
from attrobust.reporting.rows import OLD_ROW_COLUMNS, ROW_COLUMNS, ROWS_BEFORE_INTERVALS
from attrobust.reporting.settings import Flat, read_settings
from attrobust.reporting.tables import RESULTS_FILE

FAILED_FILE = "failed.txt"
MODEL_FILE = "model.pt"  # as attrobust.engine.checkpoint.MODEL_FILE (reporting imports nothing from the engine)
NOT_EVALUATED = "not evaluated"
SHARD = "shard"


@dataclass(frozen=True)
class RunRecord:
    folder: Path
    overrides: dict[str, str]
    state: str            # done | failed | not evaluated | missing | unreadable | shard (its rows are in a merge)
    reason: str = ""
    results: tuple[pd.DataFrame, ...] = ()  # the rows of every results.csv of a done run
    described: dict[str, Flat] = field(default_factory=dict)  # setting / evaluation hash -> its settings


def find_runs(folder: Path) -> list[RunRecord]:
    """Every Hydra job folder under `folder` (itself included), with its state."""
    records = []
    for overrides_file in sorted(folder.rglob(".hydra/overrides.yaml")):
        run = overrides_file.parent.parent
        inside = [folder / part for part in run.relative_to(folder).parents if part != Path(".")]
        if any((parent / ".hydra").is_dir() for parent in inside):
            continue  # an evaluation inside a training run (<run>/evaluate/<time>): its rows belong to that run
        records.append(_record(run, overrides_file))
    return records


def _record(run: Path, overrides_file: Path) -> RunRecord:
    try:
        listed = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            raise ValueError("not a list of key=value overrides")
    except (OSError, ValueError, yaml.YAMLError) as error:
        return RunRecord(run, {}, "unreadable", f"broken {overrides_file}: {_first_line(error)}")
    overrides = dict(_split(item) for item in listed)
    result_files = sorted(run.rglob(RESULTS_FILE))
    if result_files:
        frames, described = [], {}
        for path in result_files:
            frame, problem = read_results(path)
            if frame is None:
                return RunRecord(run, overrides, "unreadable", problem)
            frames.append(frame)
            described.update(read_settings(path.parent))
        return RunRecord(run, overrides, "done", results=tuple(frames), described=described)
    if is_finished_shard(run):
        return RunRecord(run, overrides, SHARD)
    failed = run / FAILED_FILE
    if failed.is_file():
        try:
            reason = next(iter(failed.read_text(encoding="utf-8").strip().splitlines()), "") or "empty failed.txt"
        except (OSError, UnicodeDecodeError) as error:
            reason = f"unreadable {failed}: {_first_line(error)}"
        return RunRecord(run, overrides, "failed", reason)
    if (run / MODEL_FILE).is_file():
        return RunRecord(run, overrides, NOT_EVALUATED, f"trained, no results yet: attrobust evaluate checkpoint={run}")
    return RunRecord(run, overrides, "missing", "no results.csv and no failed.txt")


def read_results(path: Path) -> tuple[pd.DataFrame | None, str]:
    """The rows of one results.csv, or None and why it cannot be used (empty, truncated, foreign)."""
    try:  # hashes and ids as text: '012345678901' or '5e1234567890' must not be read as numbers
        frame = pd.read_csv(path, dtype={"run_id": str, "config_hash": str, "setting": str, "evaluation": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        return None, f"unreadable {path}: {_first_line(error)}"
    if list(frame.columns) == OLD_ROW_COLUMNS:  # written before the setting and evaluation hashes
        frame = frame.assign(setting="", evaluation="")
    if list(frame.columns) == ROWS_BEFORE_INTERVALS:  # written before the intervals
        frame = frame.assign(low=float("nan"), high=float("nan"))
    if list(frame.columns) != ROW_COLUMNS:
        return None, f"unreadable {path}: not an attrobust result file (unexpected columns)"
    # every row names its run, metric and count and ends with the config hash (a value may be empty: no images)
    if frame.empty or frame[["run_id", "metric", "n", "seed", "config_hash"]].isna().any().any():
        return None, f"unreadable {path}: {'no rows' if frame.empty else 'truncated (rows with missing values)'}"
    if not pd.api.types.is_numeric_dtype(frame["value"]):
        return None, f"unreadable {path}: truncated or corrupt (non-numeric values)"
    if not complete_rows(path):  # a row cut short: its last fields (the interval) would read as empty
        return None, f"unreadable {path}: truncated (a row with fewer fields than the header)"
    return frame, ""


def complete_rows(path: Path) -> bool:
    """Every line of the CSV file has as many fields as its header, and the file ends with a newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = list(csv.reader(io.StringIO(text)))
    return text.endswith("\n") and all(len(line) == len(lines[0]) for line in lines if line)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value
