"""Progress for long loops: a Rich bar on a terminal or in a notebook, plain periodic log lines otherwise (cluster
logs)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("attrobust")
# (progress description, estimated seconds) of the command's parts, in order; a context variable, so that it lasts
# as long as the job that set it (launch.HydraTask runs each job in a context of its own)
_PLAN: ContextVar[tuple[tuple[str, float], ...]] = ContextVar("attrobust_command_plan", default=())


def set_command_plan(parts: list[tuple[str, float]]) -> None:
    """The command's parts and their estimated seconds (`engine.cost`): a part's ETA adds the parts after it."""
    _PLAN.set(tuple(parts))


def later_parts_s(description: str) -> float:
    """Estimated seconds of the parts after the one reporting as `description` (0 when it is not planned)."""
    plan = _PLAN.get()
    names = [name for name, _ in plan]
    return sum(seconds for _, seconds in plan[names.index(description) + 1:]) if description in names else 0.0


def in_notebook() -> bool:
    """Running in a Jupyter kernel, where Rich draws its bar in the cell's output (attrobust.api)."""
    return Console(stderr=True).is_jupyter


class ProgressReporter:
    """`with ProgressReporter("epoch 1/10", total=80) as p: p.advance(1, status)`.

    `status` is a callable giving the text to show (e.g. running accuracy); it is only called when the display is
    refreshed, so reading tensors inside it (a host-device sync) happens about once a second, not every step.
    """

    def __init__(self, description: str, total: int, log_every_s: float = 30.0, interactive: bool | None = None,
                 already_done: float = 0):
        self.description = description
        self.total = total
        self.log_every_s = log_every_s
        self.interactive = (sys.stderr.isatty() or in_notebook()) if interactive is None else interactive
        self.done = self._already_done = already_done  # done by an earlier run: not part of this run's rate
        self._started = time.monotonic()
        self._last_refresh = 0.0
        self._last_log = self._started
        self._bar: Progress | None = None

    def __enter__(self) -> ProgressReporter:
        if self.interactive:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[command]}"),
                                 TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.done, status="",
                                            command="")
        return self

    def advance(self, steps: float = 1, status: Callable[[], str] | None = None) -> None:
        """`steps` more units done (a fraction of a unit when a unit has steps of its own: an attack's images)."""
        self.advance_to(self.done + steps, status)

    def advance_to(self, done: float, status: Callable[[], str] | None = None) -> None:
        """`done` units done in all (also back, when a unit is started again)."""
        self.done = done
        now = time.monotonic()
        if self._bar is not None:
            fields = {}
            if now - self._last_refresh >= 1.0 or self.done >= self.total:
                if status is not None:
                    fields["status"] = status()
                left, later = self._left(now)
                fields["command"] = f"(command: ~{left + later:.0f} s)" if left is not None and later else ""
                self._last_refresh = now
            self._bar.update(self._task, completed=done, **fields)
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            text = f" {status()}" if status is not None else ""
            left, later = self._left(now)
            eta = "" if left is None else f", about {left:.0f} s left" + (
                f" (about {left + later:.0f} s for the whole command)" if later else "")
            log.info("%s: %d/%d (%.0f s%s)%s", self.description, int(done), self.total, now - self._started, eta,
                     text)

    def _left(self, now: float) -> tuple[float | None, float]:
        """Seconds left in this part at its rate so far (None: unknown yet or done), and the estimate of the command's
        later parts (`set_command_plan`)."""
        elapsed = now - self._started
        rate = (self.done - self._already_done) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 and self.done < self.total else None
        return left, later_parts_s(self.description)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started
