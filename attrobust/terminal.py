"""The Rich console that prints tables: the terminal's width, or a wide page when the output goes to a file or a
cluster log, where Rich's default of 80 columns would squeeze a wide table into unreadable cells."""

from __future__ import annotations

import sys

from rich.console import Console

LOG_WIDTH = 250  # columns when stdout is not a terminal


def console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)
