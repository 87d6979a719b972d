"""`logger=csv`: plain files in the run folder, for a tracker of your own or a spreadsheet: `params.json` (the
resolved config and provenance), `metrics.csv` (step, name, value: each epoch's training terms, then every result
row) and `artifacts.txt` (the tables and figures of the run, which stay where the run wrote them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attrobust.atomic import write_text_atomic
from attrobust.tracking import LOGGERS
from attrobust.tracking.base import TrackedRun, Tracker, check_inside_run_folder


@LOGGERS.register("csv")
@dataclass
class CsvTracker(Tracker):
    folder: str = "tracking"  # inside the run folder

    _dir: Path | None = field(default=None, init=False, repr=False)
    _rows: list[dict[str, object]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check_inside_run_folder(self.folder)

    def start(self, run: TrackedRun) -> None:
        self._dir = run.run_dir / self.folder
        self._rows = []
        described = {"name": run.name, "command": run.command, "group": run.group, "params": run.params}
        write_text_atomic(self._dir / "params.json", json.dumps(described, indent=1, default=str) + "\n")
        write_text_atomic(self._dir / "metrics.csv", "step,name,value\n")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        assert self._dir is not None, "start() first"
        self._rows += [{"step": step, "name": name, "value": value} for name, value in metrics.items()]
        write_text_atomic(self._dir / "metrics.csv", pd.DataFrame(self._rows).to_csv(index=False))

    def log_artifacts(self, files: Sequence[Path]) -> None:
        assert self._dir is not None, "start() first"
        write_text_atomic(self._dir / "artifacts.txt", "".join(f"{path.name}\n" for path in files))

    def finish(self, failed: bool) -> None:
        if self._dir is not None:
            write_text_atomic(self._dir / "status.txt", ("failed" if failed else "finished") + "\n")
        self._dir = None
