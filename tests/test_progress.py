"""Progress: plain periodic log lines off a terminal, a Rich bar on one."""

from __future__ import annotations

import logging

from attrobust.engine.progress import ProgressReporter


def test_plain_progress_logs_periodic_lines(caplog):
    caplog.set_level(logging.INFO, logger="attrobust")
    with ProgressReporter("epoch 1/1", total=3, log_every_s=0.0, interactive=False) as progress:
        for _ in range(3):
            progress.advance(1, lambda: "acc=0.5")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("epoch 1/1: 3/3") and lines[-1].endswith("acc=0.5")


def test_rich_progress_runs(capsys):
    with ProgressReporter("evaluate", total=2, interactive=True) as progress:
        progress.advance(1, lambda: "x")
        progress.advance(1, lambda: "y")
    assert progress.done == 2
