"""`logger=mlflow`: an MLflow run per job in a local tracking store, by default the SQLite database
`outputs/mlflow.db` (a real database, no server: `mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db`), its
files under `outputs/mlartifacts`. The resolved config and provenance are the run's parameters, every number a
metric, the tables and figures its artifacts; a multirun's jobs are tagged with their sweep folder. Written with the
MLflow client (no global active run, so jobs in one process never share one)."""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrobust.tracking import LOGGERS
from attrobust.tracking.base import TrackedRun, Tracker

PARAM_LIMIT = 6000  # MLflow's longest parameter value (characters)
BATCH = 100         # MLflow takes at most 100 parameters in one call
ATTEMPTS = 3        # tries to open the run (waits 1, 2 s between them)


@LOGGERS.register("mlflow")
@dataclass
class MlflowTracker(Tracker):
    package = "mlflow"
    extra = "mlflow"

    tracking_uri: str = "sqlite:///outputs/mlflow.db"  # a relative sqlite path is taken from the working folder
    artifact_location: str = "outputs/mlartifacts"     # where a new experiment keeps its runs' files
    experiment: str = "attrobust"

    _client: Any = field(default=None, init=False, repr=False)
    _run_id: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ValueError("experiment must be a name, got an empty one")

    def start(self, run: TrackedRun) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # not "creating tables" on every run

        uri, database = self.tracking_uri, None
        if uri.startswith("sqlite:///"):  # a local store: its folder made, its creation serialised
            database = Path(uri.removeprefix("sqlite:///")).absolute()
            database.parent.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{database}"
        tags = {"command": run.command, "run_dir": str(run.run_dir)} | ({"sweep": run.group} if run.group else {})
        # a sweep's jobs in several processes (joblib) may open a new store at once: one at a time creates its tables
        with _locked(None if database is None else database.with_name(database.name + ".lock")):
            for attempt in range(ATTEMPTS):
                try:
                    self._client = MlflowClient(tracking_uri=uri)
                    self._run_id = self._client.create_run(self._experiment_id(), run_name=run.name,
                                                           tags=tags).info.run_id
                    break
                except Exception:  # noqa: BLE001 (a store another program writes: "database is locked")
                    if attempt == ATTEMPTS - 1:
                        raise
                    time.sleep(1.0 + attempt)
        params = [Param(key, str(value)[:PARAM_LIMIT]) for key, value in sorted(run.params.items())]
        for start in range(0, len(params), BATCH):
            self._client.log_batch(self._run_id, params=params[start:start + BATCH])

    def _experiment_id(self) -> str:
        """The experiment's id, created on first use (jobs of a sweep in several processes may race to create it)."""
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = Path(self.artifact_location).absolute().as_uri()
        try:
            return self._client.create_experiment(self.experiment, artifact_location=location)
        except Exception:  # noqa: BLE001 (another job created it first: use that one)
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(batch), 1000):  # at most 1000 metrics in one call
            self._client.log_batch(self._run_id, metrics=batch[start:start + 1000])

    def log_artifacts(self, files: Sequence[Path]) -> None:
        for path in files:
            self._client.log_artifact(self._run_id, str(path))

    def finish(self, failed: bool) -> None:
        if self._client is not None and self._run_id is not None:
            self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")
        self._client, self._run_id = None, None



@contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """An exclusive lock on `path` (created) while the block runs; nothing when `path` is None."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
