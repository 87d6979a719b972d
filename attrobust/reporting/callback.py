"""A Hydra callback that writes the report of a sweep when the multirun ends (in the launching process)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from attrobust import command_state
from attrobust.errors import AttrobustError
from attrobust.terminal import console

log = logging.getLogger(__name__)


class SweepReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from attrobust.reporting.sweep import print_report

        folder = Path(str(config.hydra.sweep.dir))
        state = command_state.current()
        if state is not None:  # the command reads its jobs' failures from the folder
            state.finished_sweeps.append(folder)
        try:
            print_report(folder, console())
        except AttrobustError as error:
            log.warning("no report for %s: %s", folder, error)
