"""Running a command through Hydra: its own parser and runner, a job function that turns user mistakes and faults
into one line, and the run folder's snapshot; what the command line says is read first (attrobust/overrides.py).

Going through Hydra's `get_args_parser()` and `_run_hydra()` (private; pinned by `hydra-core>=1.3.2,<1.5` and a
signature test) keeps every Hydra feature: run dirs, `.hydra/` snapshots, `-m` multirun with any launcher,
`--cfg job`, `-cd DIR` for a user's own configs, `--hydra-help`. Imported only when a command runs, so that
`attrobust --help` answers before torch, Hydra and pandas are loaded.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import version
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from attrobust import command_state, overrides, rundir
from attrobust.atomic import write_text_atomic
from attrobust.config import (SWEPT_KEYS_ENV, config_dir, describe_config_error, register_resolvers, to_plain,
                              without_logger)
from attrobust.engine import distributed
from attrobust.errors import AttrobustError, describe_os_error
from attrobust.provenance import PROVENANCE_FILE, provenance
from attrobust.reporting.runs import FAILED_FILE
from attrobust.reporting.tables import rich_table
from attrobust.terminal import console
from attrobust.tracking.session import Tracking, tracked_run

log = logging.getLogger("attrobust")
_console = console()


class CommandFailed(Exception):
    """The command's error lines (each printed as `error: ...`); the CLI exits with status 2."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def run_command(config_name: str, args: Sequence[str], multirun: bool) -> None:
    """Run `attrobust <config_name> ARGS` (the task of the same name in `attrobust.tasks`); raises CommandFailed."""
    register_resolvers()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, so user mistakes become one line
    parser = get_args_parser()
    parser.error = _argument_error  # type: ignore[method-assign]  # one line, not argparse's usage text
    if config_name in ("evaluate", "attack"):
        args = overrides.attack_spelling(args, old=config_name == "attack")
    args = overrides.threat_spelling(args)
    with command_state.opened() as state:
        failures = state.failures
        try:
            parsed = parser.parse_args((["--multirun"] if multirun else []) + list(args))
            overrides.check_group_choices(parsed.overrides, parsed.config_dir)
            overrides.check_dataset_keys(config_name, parsed.overrides)
            os.environ[SWEPT_KEYS_ENV] = ",".join(overrides.swept_keys(parsed.overrides)) if multirun else ""
            version.setbase("1.3")
            _run_hydra(args=parsed, args_parser=parser, task_function=HydraTask(config_name),
                       config_path=str(config_dir()), config_name=config_name)
        except (AttrobustError, rundir.RefusedRunFolder) as error:
            failures.append(str(error))
        except (HydraException, OmegaConfBaseException) as error:
            failures.append(_describe_hydra_error(error))
        except OSError as error:  # an environment fault while Hydra sets a run up (its folder, log, .hydra/)
            failures.append(describe_os_error(error))
        except ValueError as error:  # Hydra's own checks: -m together with --cfg, a group override without a name
            if not _raised_by_hydra(error):
                raise
            hint = " (print a sweep's config without -m)" if "can be specified" in str(error) else \
                f" in {' '.join(args)} (overrides are key=value, e.g. train.epochs=3)"
            failures.append(f"{str(error).strip().splitlines()[0]}{hint}")
        for sweep in state.finished_sweeps:  # jobs run by other processes (joblib, submitit) leave failed.txt behind
            for marker in sorted(sweep.rglob(FAILED_FILE)):
                message = marker.read_text(encoding="utf-8").strip()
                if message not in failures:
                    failures.append(message)
    if failures:
        raise CommandFailed(failures)


def _argument_error(message: str) -> None:
    """What argparse reports (an unknown flag such as --epochs 3), as one line."""
    raise AttrobustError(f"{message}; attrobust takes Hydra overrides such as train.epochs=3, and -m, --cfg job, "
                         f"-cd DIR (see: attrobust COMMAND --help)")


def _raised_by_hydra(error: BaseException) -> bool:
    """The exception came from Hydra's own code (its innermost frame is in the hydra package)."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace is not None and f"{os.sep}hydra{os.sep}" in trace.tb_frame.f_code.co_filename


@dataclass(frozen=True)
class HydraTask:
    """The job function Hydra runs: a module-level class, so launchers that pickle it (joblib, submitit) can."""

    task_name: str  # the function of the module attrobust.tasks.<task_name> (imported in the job's own process)

    def __call__(self, cfg: DictConfig) -> Any:
        task: Callable[[DictConfig, rundir.Job], Any] = getattr(
            importlib.import_module(f"attrobust.tasks.{self.task_name}"), self.task_name)
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        where = f"job {hydra_cfg.job.num} {list(hydra_cfg.overrides.task)}: " if multirun else ""
        named = any(re.match(r"[+~]*hydra\.run\.dir=", item) for item in hydra_cfg.overrides.hydra)
        job_log = f"{hydra_cfg.job.name}.log"
        fresh = False  # the folder held no earlier run (known once this job holds it)
        main = distributed.launched_rank() == 0
        task_cfg = without_logger(cfg)  # where results are logged changes no result, hash or fingerprint
        tracking = Tracking()  # the trackers of logger=..., opened when the job's work begins
        job = _job(run_dir, cfg, task_cfg, hydra_cfg, tracking, main)
        state = command_state.current()
        failures = state.failures if state is not None else []  # another process's job: failed.txt reports it
        try:
            with rundir.hold(run_dir, enabled=main):
                fresh = rundir.is_fresh(run_dir, job_log)
                (run_dir / FAILED_FILE).unlink(missing_ok=True)
                if main:
                    tracking.trackers = Tracking.configured(_logger_block(cfg)).trackers
                if multirun:  # `report` finds a sweep's jobs by their snapshot, even one killed before it starts
                    job.keep()
                result = contextvars.copy_context().run(task, task_cfg, job)  # what the job sets, it keeps
                tracking.finish(run_dir, failed=False)
        except rundir.RunDirBusy as error:  # another job's folder: touch nothing
            failures.append(f"{where}{error}")
            return None
        except (AttrobustError, OSError) as error:  # a user mistake or an environment fault: one line
            message = f"{where}{describe_os_error(error) if isinstance(error, OSError) else error}"
            failures.append(message)
            tracking.finish(run_dir, failed=True)
            if not job.started and fresh:  # a failed start: take back what it left
                rundir.discard_failed_start(run_dir, hydra_cfg.job.name, job_log, keep_folder=named)
            if run_dir.is_dir():
                _mark_failed(run_dir, message)
            return None
        except BaseException as error:  # a bug or an interrupt: keep the traceback, mark the run for `report`
            if not job.started and fresh:
                _quietly(job.keep)
            _mark_failed(run_dir, f"{where}{type(error).__name__}: {error}")
            tracking.finish(run_dir, failed=True)
            raise
        if isinstance(result, pd.DataFrame):
            _console.print(rich_table(result, str(run_dir)))
        return result


def _job(run_dir: Path, cfg: DictConfig, task_cfg: DictConfig, hydra_cfg: DictConfig, tracking: Tracking,
         main: bool) -> rundir.Job:
    """The job handed to a task: its snapshot, and when its work begins its trackers (on the main process; the
    others write nothing); each training epoch's row goes to the trackers."""
    def begin() -> None:
        if main:
            sweep = str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
            tracking.start(tracked_run(run_dir, str(hydra_cfg.job.name), to_plain(task_cfg), sweep))

    trackers = cfg.get("logger")
    return rundir.Job(run_dir, on_start=lambda: _write_snapshot(run_dir, task_cfg, trackers, hydra_cfg) if main
                      else None,
                      on_work=begin, on_epoch=tracking.log_epoch)


def _logger_block(cfg: DictConfig) -> dict[str, Any] | None:
    """The `logger:` block of a job's config, resolved (None: the config has none)."""
    if "logger" not in cfg:
        return None
    block = OmegaConf.to_container(cfg.logger, resolve=True)
    if not isinstance(block, dict):
        raise AttrobustError(f"logger must be chosen from conf/logger (logger=csv, logger=[csv,mlflow]), got {block!r}")
    return block


def _quietly(write: Callable[[], None]) -> None:
    """A best-effort write while reporting another error (the folder may be the fault)."""
    try:
        write()
    except OSError as error:
        log.warning("could not write into the run folder: %s", describe_os_error(error))


def _write_snapshot(run_dir: Path, task_cfg: DictConfig, trackers: Any, hydra_cfg: DictConfig) -> None:
    """What Hydra writes before a job (`hydra.output_subdir: null` in our configs) and `provenance.json`, written
    when the job's work begins (`rundir.Job.mark_started`): `.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`.
    The config is the task's, as it completed it (a checkpoint's dataset and threat model), with the trackers' block
    (`trackers`, None without one) in the snapshot but not in `provenance.json`'s config hash."""
    snapshot = run_dir / ".hydra"
    shown = task_cfg.copy()
    if trackers is not None:
        with open_dict(shown):
            shown.logger = trackers
    write_text_atomic(snapshot / "config.yaml", OmegaConf.to_yaml(shown))
    write_text_atomic(snapshot / "hydra.yaml", OmegaConf.to_yaml(HydraConfig.instance().cfg))
    write_text_atomic(snapshot / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
    try:  # resolved, as the result rows' config_hash of a training run is
        plain = OmegaConf.to_container(task_cfg, resolve=True)
    except OmegaConfBaseException:
        plain = OmegaConf.to_container(task_cfg, resolve=False)
    command = ["attrobust", str(hydra_cfg.job.name), *hydra_cfg.overrides.task]  # this job alone, no -m
    write_text_atomic(run_dir / PROVENANCE_FILE, json.dumps(provenance(plain, command), indent=1) + "\n")


def _mark_failed(run_dir: Path, message: str) -> None:
    """`failed.txt` for `report`; a folder that cannot be written (the fault itself, perhaps) keeps none."""
    _quietly(lambda: write_text_atomic(run_dir / FAILED_FILE, message + "\n"))


def _describe_hydra_error(error: Exception) -> str:
    inner: BaseException | None = error
    seen: set[int] = set()
    while inner is not None and id(inner) not in seen:  # an AttrobustError raised inside a resolver (a missing
        seen.add(id(inner))                              # checkpoint, say); a chain may loop back on itself
        if isinstance(inner, AttrobustError):
            return str(inner)
        inner = inner.__cause__ or inner.__context__
    if "Could not override 'model'" in str(error):  # evaluate, attack, explain: the model comes with its dataset
        return ("model=NAME needs dataset=NAME in this command (model=external: the data to evaluate it on; a "
                "checkpoint brings its own model)")
    cause = error.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        override = re.search(r"Could not override '([^']+)'", str(error))
        key = override.group(1) if override else getattr(cause, "full_key", None) or str(cause)
        return f"unknown config key '{key}'; list the valid keys with --cfg job (add a new key with +{key}=...)"
    if isinstance(error, OverrideParseException):
        return f"cannot parse the overrides: {str(error).strip().splitlines()[0]} (Hydra syntax: key=value)"
    if isinstance(error, OmegaConfBaseException):
        return describe_config_error(error)
    if isinstance(cause, OmegaConfBaseException):
        return describe_config_error(cause)
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(error).__name__
