"""A job's hold on its run folder: an advisory lock file, the leftovers of killed writes, and failed starts.

A job writes its snapshot (`.hydra/`, `provenance.json`) only when its work begins (`mark_started`, called by each
task just before it trains or attacks), so a job that fails before (a bad value, a missing file) never overwrites
the snapshot of an earlier run in the same folder. A single job that fails before it starts, in a folder that held
no earlier run, takes back its log and leaves nothing, or only `failed.txt` where the user named the folder; a
sweep's job writes its snapshot and `failed.txt`, so that `report` lists the failure.

`hold(run_dir)` creates `.attrobust.lock` (pid, host, start time) with O_EXCL before the job writes anything, so a
second job pointed at the same folder (the same command twice, or seed 0 and seed 1 with one `hydra.run.dir`) stops
with one line naming the holder instead of interleaving its files with the first. A lock left by a process that no
longer runs on this host (killed with SIGKILL) is taken over with a warning; one from another host is reported, as
only the user can tell whether that job still runs. While it holds the lock, the job removes the `.*.partial` files
that a write killed half-way left behind (see `attrobust.atomic`): no other attrobust job writes there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrobust.errors import AttrobustError

log = logging.getLogger("attrobust")
LOCK_FILE = ".attrobust.lock"
_on_start: dict[Path, Callable[[], None]] = {}
_started: set[Path] = set()


def when_started(run_dir: Path, callback: Callable[[], None]) -> None:
    """Call `callback` (write the run's snapshot) once the job's work begins in `run_dir`."""
    _on_start[run_dir.resolve()] = callback


def mark_started(run_dir: Path) -> None:
    """The job's work begins (training, attacks): its snapshot is written and its folder is kept from here on."""
    key = run_dir.resolve()
    _started.add(key)
    callback = _on_start.pop(key, None)
    if callback is not None:
        callback()


def started(run_dir: Path) -> bool:
    return run_dir.resolve() in _started


def is_fresh(run_dir: Path, job_log: str) -> bool:
    """True when the folder holds nothing but what Hydra and a failed or killed start leave (no earlier run)."""
    leftovers = {job_log, LOCK_FILE, "failed.txt"}
    return not run_dir.is_dir() or all(path.name in leftovers for path in run_dir.iterdir())


def discard_failed_start(run_dir: Path, job_log: str, keep_folder: bool) -> None:
    """Remove what a job that failed before it started left in a fresh folder: its log, and the folder itself
    unless `keep_folder` (the caller writes failed.txt there)."""
    (run_dir / job_log).unlink(missing_ok=True)
    if not keep_folder and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


class RunDirBusy(AttrobustError):
    """Another job holds the run folder: nothing of it may be touched."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _stale(holder: dict[str, Any] | None) -> bool:
    """A lock whose process is gone from this host (or that this very process left behind)."""
    if holder is None or holder.get("host") != socket.gethostname():
        return False
    return holder["pid"] == os.getpid() or not _alive(holder["pid"])


def _acquire(run_dir: Path) -> Path:
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not _stale(holder):
                who = (f"process {holder['pid']} on {holder.get('host')} (since {holder.get('since')})" if holder
                       else "another job (its lock file is being written or unreadable)")
                raise RunDirBusy(f"run folder {run_dir} is in use by {who}; wait for it to finish or use another "
                                 f"folder (hydra.run.dir=DIR); if that job is gone, delete {path}") from None
            try:  # take the stale lock over: of several racing takers only one rename succeeds
                os.replace(path, path.with_name(f"{LOCK_FILE}.{os.getpid()}.stale"))
                path.with_name(f"{LOCK_FILE}.{os.getpid()}.stale").unlink()
            except FileNotFoundError:
                continue
            log.warning("took over the lock of %s from process %s, which no longer runs", run_dir,
                        holder["pid"] if holder else "?")
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        return path
    raise RunDirBusy(f"run folder {run_dir} is being taken by several jobs at once; use one folder per job")


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that were killed half-way (only while holding the lock)."""
    removed = sorted(run_dir.glob(".*.partial"))
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.info("removed %d unfinished write(s) of an earlier job in %s", len(removed), run_dir)
    return removed


@contextmanager
def hold(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold `run_dir` for this job (see the module doc); `enabled=False` for processes that never write there."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = _acquire(run_dir)
    try:
        remove_partial_writes(run_dir)
        yield
    finally:
        if (_holder(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
