"""`logger=tensorboard`: an event file in the run folder (`tensorboard --logdir outputs/`): every number as a
scalar (training terms per epoch, the results at the last step), the resolved config as text and as hyperparameters
(the HParams tab), the tables as text and the figures as images. Written with torch.utils.tensorboard."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrobust.tracking import LOGGERS
from attrobust.tracking.base import TrackedRun, Tracker, check_inside_run_folder

TEXT_LIMIT = 1 << 20  # tables larger than this (per-image rows of a big evaluation) are not copied as text


@LOGGERS.register("tensorboard")
@dataclass
class TensorBoardTracker(Tracker):
    package = "tensorboard"
    extra = "tensorboard"

    folder: str = "tensorboard"  # inside the run folder

    _writer: Any = field(default=None, init=False, repr=False)
    _step: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        check_inside_run_folder(self.folder)

    def start(self, run: TrackedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self._writer = SummaryWriter(log_dir=str(run.run_dir / self.folder))
        self._writer.add_text("config", "```\n" + json.dumps(run.config, indent=1, default=str) + "\n```")
        for summary in hparams({key: value for key, value in run.params.items() if value is not None}, {}):
            self._writer.file_writer.add_summary(summary)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)
        self._step = max(self._step, step)

    def log_artifacts(self, files: Sequence[Path]) -> None:
        import matplotlib.image

        for path in files:
            if path.suffix == ".png":
                self._writer.add_image(path.name, matplotlib.image.imread(path)[..., :3], self._step,
                                       dataformats="HWC")
            elif path.stat().st_size <= TEXT_LIMIT:
                self._writer.add_text(path.name, "```\n" + path.read_text(encoding="utf-8") + "\n```", self._step)

    def finish(self, failed: bool) -> None:
        if self._writer is not None:
            self._writer.add_text("status", "failed" if failed else "finished", self._step)
            self._writer.close()
        self._writer = None
