"""What every experiment tracker does for a job (`attrobust.tracking.session` calls it): start a tracked run with the
resolved config and provenance as its parameters, log metrics at a step (per-epoch training terms, then every result
row), log files (tables and figures), finish with the job's status. A tracker imports its package only when a run
starts, so choosing one that is not installed is refused in one line naming the extra that installs it."""

from __future__ import annotations

import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from attrobust.errors import AttrobustError


@dataclass(frozen=True)
class TrackedRun:
    """One job as the trackers see it."""

    name: str                    # the run folder's name
    run_dir: Path
    command: str                 # train | evaluate | attack | explain
    config: dict[str, Any]       # the resolved config (nested, plain types)
    params: dict[str, Any]       # the config flattened (reg.weight), with the provenance (commit, config hash)
    group: str | None = None     # the sweep folder of a multirun's job (its jobs are one group)


class Tracker(ABC):
    """An experiment tracker (one file per tracker, registered in `attrobust.tracking.LOGGERS`)."""

    registry_name: ClassVar[str] = ""
    package: ClassVar[str | None] = None  # the module the tracker needs (None: the standard library)
    extra: ClassVar[str | None] = None    # the attrobust extra that installs it

    def check_installed(self) -> None:
        """One line naming the extra when the tracker's package is missing."""
        if self.package is not None and importlib.util.find_spec(self.package) is None:
            raise AttrobustError(f"logger={self.registry_name} needs the '{self.package}' package, which is not "
                                 f"installed: pip install 'attrobust[{self.extra}]' (or choose logger=none)")

    @abstractmethod
    def start(self, run: TrackedRun) -> None:
        """Open the tracked run and log its parameters."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log scalar metrics at `step` (an epoch; the results at the last step)."""

    @abstractmethod
    def log_artifacts(self, files: Sequence[Path]) -> None:
        """Keep these files (tables, figures) with the tracked run."""

    @abstractmethod
    def finish(self, failed: bool) -> None:
        """Close the tracked run, marked failed or finished."""


def metric_key(*parts: str) -> str:
    """A metric name every tracker accepts (MLflow allows letters, digits, _ - . space : /): parts joined by '/'."""
    return "/".join(re.sub(r"[^\w\-. :]", "_", part).strip() for part in parts if part)


def check_inside_run_folder(folder: str) -> None:
    """A tracker's `folder` setting names a folder inside the run folder (never above it, never absolute)."""
    if not folder or Path(folder).is_absolute() or ".." in Path(folder).parts:
        raise ValueError(f"folder must be a folder inside the run folder, got {folder!r}")
