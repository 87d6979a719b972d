"""`logger=wandb`: a Weights & Biases run per job, offline by default (no network, no account): W&B writes its run
folders under `outputs/wandb/` (outside the run folder, since W&B links `latest-run` there), and `wandb sync
outputs/wandb/offline-run-*` uploads them later. The resolved config is the run's config (provenance beside it); the
training terms and the results are its history, one row per epoch and one for the results (the last values its
summary); the tables and figures one artifact; a multirun's jobs share the sweep folder as their group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrobust.tracking import LOGGERS
from attrobust.tracking.base import TrackedRun, Tracker

MODES = ("offline", "online", "disabled")


@LOGGERS.register("wandb")
@dataclass
class WandbTracker(Tracker):
    package = "wandb"
    extra = "wandb"

    project: str = "attrobust"
    entity: str | None = None
    mode: str = "offline"          # offline | online (needs `wandb login` and a network) | disabled
    dir: str = "outputs"           # W&B's own folder goes here (dir/wandb/...)
    tags: tuple[str, ...] = ()

    _run: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def start(self, run: TrackedRun) -> None:
        import wandb

        folder = Path(self.dir).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True)
        self._run = wandb.init(project=self.project, entity=self.entity, mode=self.mode, dir=str(folder),
                               name=run.name, group=run.group, job_type=run.command, tags=list(self.tags),
                               config={**run.config, "provenance": {key.removeprefix("provenance."): value
                                                                    for key, value in run.params.items()
                                                                    if key.startswith("provenance.")}},
                               settings=settings, reinit="create_new")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log({**metrics, "epoch": step})  # one history row per call; `epoch` says which

    def log_artifacts(self, files: Sequence[Path]) -> None:
        import wandb

        if not files:
            return
        artifact = wandb.Artifact(name=f"{self._run.id}-outputs", type="results")
        for path in files:
            artifact.add_file(str(path), name=path.name)
        self._run.log_artifact(artifact)

    def finish(self, failed: bool) -> None:
        if self._run is not None:
            self._run.finish(exit_code=1 if failed else 0)
        self._run = None
