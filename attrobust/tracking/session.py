"""The trackers of one job (`logger=...`): built and checked before the job starts, opened when its work begins
(`rundir.Job.mark_started`, so a job refused before it starts leaves no tracked run), fed each epoch's training row,
and at the end every row of `results.csv` as metrics and the run folder's tables and figures as artifacts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attrobust.errors import AttrobustError
from attrobust.provenance import config_hash, git_commit
from attrobust.reporting.settings import flat
from attrobust.tracking import LOGGERS
from attrobust.tracking.base import TrackedRun, Tracker, metric_key

log = logging.getLogger("attrobust")
ARTIFACT_SUFFIXES = (".csv", ".md", ".tex", ".png")  # tables and figures (not checkpoints, not per-shard parts)
RESULTS_FILE = "results.csv"


@dataclass
class Tracking:
    """The job's trackers (none: every call does nothing)."""

    trackers: list[Tracker] = field(default_factory=list)
    started: bool = False
    last_step: int = 0

    @classmethod
    def configured(cls, chosen: Mapping[str, Any] | None) -> Tracking:
        """The trackers of the `logger:` block ({name: settings}; `none` chooses nothing), each installed."""
        trackers = []
        for key, settings in (chosen or {}).items():
            if not isinstance(settings, Mapping):
                raise AttrobustError(f"logger.{key} must be a mapping of settings, got {settings!r}")
            if settings.get("name", key) == "none":
                continue
            tracker = LOGGERS.build(settings, key=f"logger.{key}")
            tracker.check_installed()
            trackers.append(tracker)
        return cls(trackers)

    def start(self, run: TrackedRun) -> None:
        """Open a tracked run in each tracker; one that cannot is refused in one line before the work begins."""
        for opened, tracker in enumerate(self.trackers):
            try:
                tracker.start(run)
            except Exception as error:  # noqa: BLE001 (a tracker's own fault: a store it cannot open, say)
                self.trackers = self.trackers[:opened + 1]  # those already open, and this one, closed as failed
                self.started = True
                self.finish(run.run_dir, failed=True)
                first_line = (str(error).strip().splitlines() or [""])[0]
                raise AttrobustError(f"logger={tracker.registry_name} could not start a tracked run: "
                                     f"{type(error).__name__}: {first_line}") from error
        self.started = bool(self.trackers)
        if self.started:
            log.info("tracking this run with %s", ", ".join(t.registry_name for t in self.trackers))

    def log_epoch(self, row: Mapping[str, float]) -> None:
        """One training epoch's row (train_log.csv's: `epoch` counts from 1): its terms as `train/<term>` at that
        step."""
        if not self.started:
            return
        step = int(row["epoch"])
        metrics = {metric_key("train", key): float(value) for key, value in row.items() if key != "epoch"}
        self._each("log the epoch", lambda tracker: tracker.log_metrics(metrics, step))
        self.last_step = max(self.last_step, step)

    def finish(self, run_dir: Path, failed: bool) -> None:
        """Every result row as metrics and the tables and figures as artifacts (unless `failed`), then close."""
        if not self.started:
            return
        self.started = False
        try:
            results = run_dir / RESULTS_FILE
            metrics = result_metrics(pd.read_csv(results)) if results.is_file() and not failed else {}
            files = artifact_files(run_dir) if not failed else []
            if metrics:
                self._each("log the results", lambda tracker: tracker.log_metrics(metrics, self.last_step))
            if files:
                self._each("keep the tables and figures", lambda tracker: tracker.log_artifacts(files))
        except (OSError, ValueError) as error:  # the run's own files: written; the trackers still close
            log.warning("could not hand the run's results to the trackers: %s", error)
        finally:
            self._each("close its run", lambda tracker: tracker.finish(failed))

    def _each(self, what: str, action: Callable[[Tracker], None]) -> None:
        """`action` on every tracker; one that fails is warned about and dropped: the job's own files are written
        whatever a tracker does, so a tracker's fault never fails the job once its work has begun."""
        for tracker in list(self.trackers):
            try:
                action(tracker)
            except Exception as error:  # noqa: BLE001
                log.warning("logger=%s could not %s (%s: %s); the run goes on without it", tracker.registry_name,
                            what, type(error).__name__, error)
                self.trackers.remove(tracker)


def tracked_run(run_dir: Path, command: str, config: dict[str, Any], group: str | None) -> TrackedRun:
    """The job as the trackers see it: its config flattened, with the commit and config hash beside it."""
    params = {**flat(config), "provenance.commit": git_commit(), "provenance.config_hash": config_hash(config),
              "provenance.run_dir": str(run_dir)}
    return TrackedRun(run_dir.name, run_dir, command, config, params, group)


def result_metrics(results: pd.DataFrame) -> dict[str, float]:
    """`<attack>/<metric>` for each result row, with `/low`, `/high` (its interval) and `/n` (its images); a metric
    that one line repeats (the images each part of a shared line scored) is numbered `<metric>/2`, `/3`, ..."""
    metrics: dict[str, float] = {}
    seen: dict[str, int] = {}
    for row in results.to_dict("records"):
        key = metric_key(str(row["attack"]), str(row["metric"]))
        seen[key] = seen.get(key, 0) + 1
        key = key if seen[key] == 1 else f"{key}/{seen[key]}"
        for suffix, column in (("", "value"), ("/low", "low"), ("/high", "high"), ("/n", "n")):
            value = row.get(column)
            if value is not None and not pd.isna(value):
                metrics[key + suffix] = float(value)
    return metrics


def artifact_files(run_dir: Path) -> list[Path]:
    """The tables and figures a run wrote into its folder (top level)."""
    return sorted(path for path in run_dir.iterdir() if path.is_file() and path.suffix in ARTIFACT_SUFFIXES)
