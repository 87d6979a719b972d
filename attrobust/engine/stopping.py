"""Stop requests: SIGTERM / SIGUSR1 (a cluster's pre-emption notice) set a flag that long loops read between units of
work (training batches, attack chunks), so the work done so far is saved before the process exits."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    """Set by SIGTERM / SIGUSR1 while `catch_stop_signals` is active; read between units of work."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def catch_stop_signals() -> Iterator[StopFlag]:
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set from the main thread
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        flag.signum = signum

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
