"""What one command gathers while Hydra runs it: the error lines to print, the sweep folders it finished, and the
folders above each run folder that it created (a failed start removes them again).

`launch.run_command` opens one `CommandState` per command (`with opened() as state`) and hands it to its job function;
the Hydra callbacks (`rundir.RunFolderGuard`, `reporting.callback.SweepReportCallback`), which Hydra builds from the
config and so cannot be handed anything, find it with `current()`. The state lives in a context variable set for the
command's duration only, so two commands in one process (tests, notebooks) never see each other's state, and nothing
has to be cleared between them. A job run in another process (joblib, submitit) has none: such jobs report through
the `failed.txt` they leave in their folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CommandState:
    failures: list[str] = field(default_factory=list)  # the command's error lines, in order
    finished_sweeps: list[Path] = field(default_factory=list)  # sweep folders whose multirun ended in this process
    created_above: dict[Path, list[Path]] = field(default_factory=dict)  # run folder -> the folders the command made


_CURRENT: ContextVar[CommandState | None] = ContextVar("attrobust_command", default=None)


@contextmanager
def opened() -> Iterator[CommandState]:
    """A fresh state for one command, found by `current()` until the block ends."""
    state = CommandState()
    token = _CURRENT.set(state)
    try:
        yield state
    finally:
        _CURRENT.reset(token)


def current() -> CommandState | None:
    """The running command's state (None outside a command, e.g. in a job's own process)."""
    return _CURRENT.get()
