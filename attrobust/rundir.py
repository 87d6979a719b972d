"""A job's hold on its run folder: an advisory lock, the leftovers of killed writes, and failed starts.

`hold(run_dir)` takes an exclusive `flock` on `.attrobust.lock` (which records the pid, host and start time) before
the job writes anything, so a second job pointed at the same folder (the same command twice, or seed 0 and seed 1
with one `hydra.run.dir`) stops with one line naming the holder instead of interleaving its files with the first. The
kernel drops the lock when its process dies, however it dies (SIGKILL, a node lost under a requeued cluster job), so
a stale lock file never blocks the next job; that job notes whose lock it took over. On a filesystem without locks
the job runs unlocked, with a warning. While it holds the lock, the job removes the `.*.partial` files that a write
killed half-way left behind (see `attrobust.atomic`): no other attrobust job writes there.

A job writes its snapshot (`.hydra/`, `provenance.json`) when its work begins (`Job.mark_started`, called by each
task just before it trains or attacks; a sweep's job at once), so a job that fails before never overwrites the
snapshot of an earlier run in the same folder. A single job that fails before it starts, in a folder that held no
earlier run, takes back its log and leaves nothing (not even the `outputs/` folders Hydra made for it), or only
`failed.txt` where the user named the folder; a sweep's job keeps its snapshot and `failed.txt`, so that `report`
lists the failure.

Run folders travel between people (a checkpoint to evaluate, a shard to merge), and a symbolic link inside one would
send a write elsewhere (`RUN/evaluate -> /outside`, `RUN/train.log -> victim`). `RunFolderGuard`, a Hydra callback of
every command, refuses such a folder before Hydra makes a folder or opens a log in it: no link among the components
of the run folder below the checkpoint's folder, none inside it. The folder itself may be a link the user made
(`hydra.run.dir=scratch-link`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from attrobust import command_state
from attrobust.errors import AttrobustError

log = logging.getLogger("attrobust")
LOCK_FILE = ".attrobust.lock"


def _nothing() -> None:
    return None


def _ignore(row: Mapping[str, float]) -> None:
    return None


@dataclass
class Job:
    """One job's run folder and whether its work has begun, handed by `launch.HydraTask` to the task it runs."""

    run_dir: Path
    on_start: Callable[[], None] = _nothing  # writes the run's snapshot (launch._write_snapshot)
    on_work: Callable[[], None] = _nothing  # opens the run's trackers (logger=), once its config is complete
    on_epoch: Callable[[Mapping[str, float]], None] = _ignore  # a training epoch's row, for the trackers
    started: bool = False
    working: bool = False

    def keep(self) -> None:
        """The job's snapshot is written and its folder kept from here on (a sweep's job: at once)."""
        if not self.started:
            self.started = True
            self.on_start()

    def mark_started(self) -> None:
        """The job's work begins (training, attacks): its folder is kept, and its trackers open with its config as
        the task completed it (the threat model of a checkpoint, say)."""
        self.keep()
        if not self.working:
            self.working = True
            self.on_work()


def symbolic_link_in(folder: Path, below: Path | None = None) -> Path | None:
    """A symbolic link that a write into `folder` could follow: a component of `folder` under `below` (when `folder`
    lies inside `below`), or anything inside `folder`; None when there is none."""
    folder = folder.absolute()
    if below is not None:
        below = below.absolute()
        current = below
        for part in folder.relative_to(below).parts if folder.is_relative_to(below) else ():
            current = current / part
            if current.is_symlink():
                return current
    if folder.is_dir():
        for root, folders, files in os.walk(folder):  # never descends into a linked folder
            for name in sorted(folders + files):
                if (Path(root) / name).is_symlink():
                    return Path(root) / name
    return None


def refuse_links(folder: Path, below: Path | None = None) -> None:
    """One line when `symbolic_link_in(folder, below)` finds a link: attrobust never writes through one there."""
    link = symbolic_link_in(folder, below)
    if link is not None:
        raise LinkInRunFolder(f"{link} is a symbolic link (to {os.readlink(link)}) inside a run folder; attrobust "
                             f"never writes through one: replace it with a real folder or file, or write elsewhere "
                             f"(hydra.run.dir=DIR)")


class LinkInRunFolder(AttrobustError):
    """A symbolic link where attrobust would write."""


class RefusedRunFolder(BaseException):
    """A run folder `RunFolderGuard` refuses. Hydra turns an `Exception` raised by a callback into a warning and goes
    on, so the guard raises this instead; `launch.run_command` reports its message as the command's one line."""


class RunFolderGuard(Callback):
    """Checks the run (or sweep) folder before Hydra creates it or opens its log (see the module doc), and notes
    which folders above it the command will create (a failed start removes them again)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            named = str(config.hydra.run.dir)
        except Exception:  # noqa: BLE001 (a missing checkpoint, say: Hydra reports it when it resolves the folder)
            return
        if not named.strip():
            raise RefusedRunFolder("hydra.run.dir is empty (the run would be written into the current folder); "
                                   "name a folder (hydra.run.dir=DIR) or leave the key out")
        run_dir = Path(named).absolute()
        checkpoint = OmegaConf.select(config, "checkpoint", default=None, throw_on_missing=False)
        below = None
        if isinstance(checkpoint, str) and checkpoint != "???":
            from attrobust.config import run_dir_of

            try:
                below = Path(run_dir_of(checkpoint))
            except AttrobustError:  # no such checkpoint: Hydra reports it when it resolves the run folder
                return
        _refuse(run_dir, below)
        state = command_state.current()
        if state is not None:
            state.created_above[run_dir] = [path for path in (run_dir, *run_dir.parents) if not path.exists()]

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse(Path(str(config.hydra.sweep.dir)).absolute())


def _refuse(folder: Path, below: Path | None = None) -> None:
    try:
        refuse_links(folder, below)
    except LinkInRunFolder as error:
        raise RefusedRunFolder(str(error)) from None


def is_fresh(run_dir: Path, job_log: str) -> bool:
    """True when the folder holds nothing but what Hydra and a failed or killed start leave (no earlier run)."""
    leftovers = {job_log, LOCK_FILE, "failed.txt"}
    return not run_dir.is_dir() or all(path.name in leftovers for path in run_dir.iterdir())


def discard_failed_start(run_dir: Path, job_name: str, job_log: str, keep_folder: bool) -> None:
    """Remove what a job that failed before it started left in a fresh folder: its log, and the folder itself (and
    the emptied folders above it that this command made, such as `outputs/train/` or `<run>/evaluate/`) unless
    `keep_folder` (the caller writes failed.txt there)."""
    (run_dir / job_log).unlink(missing_ok=True)
    if keep_folder or not run_dir.is_dir() or any(run_dir.iterdir()):
        return
    run_dir.rmdir()
    state = command_state.current()
    made = state.created_above.get(run_dir.absolute()) if state else None  # None: a config without RunFolderGuard
    above = made[1:] if made is not None else [run_dir.parent] if run_dir.parent.name == job_name else []
    for folder in above:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class RunDirBusy(AttrobustError):
    """Another job holds the run folder: nothing of it may be touched."""


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another job"
    return f"process {holder['pid']} on {holder.get('host')} (since {holder.get('since')})"


def _acquire(run_dir: Path) -> int | None:
    """The locked descriptor of `run_dir`'s lock file (None where the filesystem has no locks)."""
    path = run_dir / LOCK_FILE
    for _ in range(5):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise RunDirBusy(f"run folder {run_dir} is in use by {_describe(_holder(path))}; wait for it to finish "
                             f"or use another folder (hydra.run.dir=DIR)") from None
        except OSError as error:  # e.g. ENOLCK on a network filesystem mounted without locks
            os.close(descriptor)
            log.warning("cannot lock %s (%s): running without a lock; keep one job per run folder", path,
                        error.strerror)
            return None
        try:  # the previous holder may have removed the file between our open and our lock: lock the new one
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            os.close(descriptor)
            continue
        previous = _holder(path)
        if previous is not None:
            log.warning("took over the lock of %s from %s, which no longer holds it (killed?)", run_dir,
                        _describe(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(me).encode(), 0)
        return descriptor
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
    descriptor = _acquire(run_dir)
    try:
        remove_partial_writes(run_dir)
        yield
    finally:
        if descriptor is not None:
            (run_dir / LOCK_FILE).unlink(missing_ok=True)  # while still locked: a waiting opener sees a new inode
            os.close(descriptor)
