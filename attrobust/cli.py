"""The `attrobust` command line: Typer subcommands that hand their arguments to Hydra's own parser and runner.

Going through Hydra's `get_args_parser()` and `_run_hydra()` (private; pinned by `hydra-core>=1.3.2,<1.5` and a
signature test) keeps every Hydra feature: run dirs, `.hydra/` snapshots, `-m` multirun with any launcher,
`--cfg job`, `-cd DIR` for a user's own configs, `--hydra-help`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from hydra import version
from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException
from rich.console import Console
from rich.table import Table

from attrobust import rundir, tasks
from attrobust.atomic import write_text_atomic
from attrobust.engine import distributed
from attrobust.config import (GROUPS, SWEPT_KEYS_ENV, config_dir, describe_config_error, group_options,
                              register_resolvers)
from attrobust.errors import AttrobustError, choices, describe_os_error
from attrobust.provenance import provenance
from attrobust.reporting.callback import FINISHED_SWEEPS
from attrobust.reporting.sweep import FAILED_FILE, print_report
from attrobust.reporting.tables import rich_table

log = logging.getLogger("attrobust")
HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["--help"]}
OVERRIDES_HELP = ("Hydra overrides, e.g. dataset=mnist reg=pgd train.epochs=5; with -m, comma lists sweep "
                  "(reg=natural,pgd). Hydra's flags pass through: --cfg job, -cd DIR, --hydra-help.")
Overrides = Annotated[list[str] | None, typer.Argument(help=OVERRIDES_HELP, show_default=False)]
Multirun = Annotated[bool, typer.Option("--multirun", "-m", help="Run a sweep (Hydra multirun).")]

app = typer.Typer(
    help="attrobust: attributional-robustness experiments (Robust Attribution Regularization and beyond).\n\n"
         "Each command composes its config from conf/ with Hydra: pass key=value overrides, -m to sweep. "
         "Runs land in outputs/<command>/<time>_<dataset>_<reg>/ with a .hydra/ config snapshot.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
_console = Console()
PROVENANCE_FILE = "provenance.json"
_failures: list[str] = []


@app.command(context_settings=HYDRA_ARGS)
def train(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """Train a model (dataset=, model=, reg=, optim=, train.*) and evaluate it at the end (attack=, eval.*).

    Example: attrobust train dataset=mnist_mini reg=pgd train.epochs=5
    """
    _run("train", tasks.train, overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def evaluate(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """The paper's columns for a trained model, checkpoint=RUN_DIR (or a .pt): NA, AA, IN, CO.

    AA uses attack= (pgd), IN and CO attack@attribution_attack= (topk); attributions=false skips the latter.
    Results go to RUN_DIR/evaluate/<time>/.
    Example: attrobust evaluate checkpoint=outputs/train/<run> eval.num_examples=100
    """
    _run("evaluate", tasks.evaluate, overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def attack(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """Attack a trained model's attributions: checkpoint=RUN_DIR attack=topk|mass_center|random_sign|target.

    Writes per-image measures, the summary table, examples.pt and figure.png to RUN_DIR/attack/<time>_<attack>/.
    Example: attrobust attack checkpoint=outputs/train/<run> attack=random_sign eval.num_examples=100
    """
    _run("attack", tasks.attack, overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def explain(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """The maps of an explainer (explainer=ig|gradient|...) for chosen test images of a trained model: maps.pt and
    maps.png in RUN_DIR/explain/<time>_<explainer>/. Choose images with eval.indices=[..], eval.classes=[..],
    eval.sample=N or eval.num_examples=N (default: the first 8).

    Example: attrobust explain checkpoint=outputs/train/<run> explainer=smoothgrad eval.indices=[0,7,42]
    """
    _run("explain", tasks.explain, overrides or [], multirun)


@app.command("list")
def list_components() -> None:
    """List the datasets, models, regularisers, attacks, optimisers, explainers (group=name), presets
    (+experiment=name) and metrics (eval.metrics=[name,...])."""
    table = Table(title=f"attrobust components (configs in {config_dir()})")
    for column in ("group", "name", "description"):
        table.add_column(column)
    for group in (*GROUPS, "experiment"):
        for name in group_options(group):
            table.add_row(group if group != "experiment" else "+experiment", name,
                          _description(config_dir() / group / f"{name}.yaml"))
    from attrobust.metrics import METRICS

    for name in METRICS.names():  # metrics have no YAML: their docstrings describe them
        doc = sys.modules[METRICS.get(name).__module__].__doc__ or ""
        table.add_row("eval.metrics", name, doc.strip().splitlines()[0] if doc.strip() else "")
    _console.print(table)


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="A run or sweep dir (searched recursively).")]) -> None:
    """The paper's table over every run under DIRECTORY: mean ± std over seeds, one line per dataset x model x reg x
    swept value; report.csv, report.md, report.tex (and report.png for a numeric sweep) in DIRECTORY. Failed and
    missing runs are listed."""
    if not directory.is_dir():
        _fail(f"no such directory: {directory}")
    try:
        print_report(directory, _console)
    except AttrobustError as error:
        _fail(str(error))
    except OSError as error:  # e.g. a read-only sweep folder
        _fail(describe_os_error(error))


def _run(config_name: str, task: Callable[[DictConfig, Path], Any], args: Sequence[str], multirun: bool) -> None:
    register_resolvers()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, so user mistakes become one line
    parser = get_args_parser()
    parsed = parser.parse_args((["--multirun"] if multirun else []) + list(args))
    try:
        _check_group_choices(parsed.overrides, parsed.config_dir)
        os.environ[SWEPT_KEYS_ENV] = ",".join(_swept_keys(parsed.overrides)) if multirun else ""
        version.setbase("1.3")
        _failures.clear()
        FINISHED_SWEEPS.clear()
        rundir.reset()
        _run_hydra(args=parsed, args_parser=parser, task_function=HydraTask(task),
                   config_path=str(config_dir()), config_name=config_name)
    except AttrobustError as error:
        _fail(str(error))
    except (HydraException, OmegaConfBaseException) as error:
        _fail(_describe_hydra_error(error))
    except OSError as error:  # an environment fault while Hydra sets a run up (its folder, log, .hydra/)
        _fail(describe_os_error(error))
    except ValueError as error:  # Hydra's own argument checks, e.g. -m together with --cfg
        if "can be specified" not in str(error):
            raise
        _fail(f"{error} (print a sweep's config without -m)")
    for sweep in FINISHED_SWEEPS:  # jobs run by other processes (joblib, submitit) leave failed.txt behind
        for marker in sorted(sweep.rglob(FAILED_FILE)):
            message = marker.read_text(encoding="utf-8").strip()
            if message not in _failures:
                _failures.append(message)
    if _failures:
        for message in _failures:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)


def _swept_keys(overrides: Sequence[str]) -> list[str]:
    """The keys a multirun sweeps (`reg.weight` of `reg.weight=0.1,1`); the jobs' folders are named by their values."""
    parsed = OverridesParser.create().parse_overrides([str(item) for item in overrides])
    return [override.key_or_group for override in parsed if override.is_sweep_override()]


@dataclass(frozen=True)
class HydraTask:
    """The job function Hydra runs: a module-level class, so launchers that pickle it (joblib, submitit) can."""

    task: Callable[[DictConfig, Path], Any]

    def __call__(self, cfg: DictConfig) -> Any:
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        where = f"job {hydra_cfg.job.num} {list(hydra_cfg.overrides.task)}: " if multirun else ""
        named = any(re.match(r"[+~]*hydra\.run\.dir=", item) for item in hydra_cfg.overrides.hydra)
        job_log = f"{hydra_cfg.job.name}.log"
        fresh = False  # the folder held no earlier run (known once this job holds it)
        rundir.when_started(run_dir, lambda: _write_snapshot(run_dir, cfg, hydra_cfg))
        try:
            with rundir.hold(run_dir, enabled=distributed.launched_rank() == 0):
                fresh = rundir.is_fresh(run_dir, job_log)
                (run_dir / FAILED_FILE).unlink(missing_ok=True)
                if multirun:  # `report` finds a sweep's jobs by their snapshot, even one killed before it starts
                    rundir.mark_started(run_dir)
                result = self.task(cfg, run_dir)
        except rundir.RunDirBusy as error:  # another job's folder: touch nothing
            _failures.append(f"{where}{error}")
            return None
        except (AttrobustError, OSError) as error:  # a user mistake or an environment fault: one line
            message = f"{where}{describe_os_error(error) if isinstance(error, OSError) else error}"
            _failures.append(message)
            if not rundir.started(run_dir) and fresh:  # a failed start: take back what it left
                rundir.discard_failed_start(run_dir, hydra_cfg.job.name, job_log, keep_folder=named)
            if run_dir.is_dir():
                _mark_failed(run_dir, message)
            return None
        except BaseException as error:  # a bug or an interrupt: keep the traceback, mark the run for `report`
            if not rundir.started(run_dir) and fresh:
                _quietly(lambda: rundir.mark_started(run_dir))
            _mark_failed(run_dir, f"{where}{type(error).__name__}: {error}")
            raise
        if isinstance(result, pd.DataFrame):
            _console.print(rich_table(result, str(run_dir)))
        return result


def _quietly(write: Callable[[], None]) -> None:
    """A best-effort write while reporting another error (the folder may be the fault)."""
    try:
        write()
    except OSError as error:
        log.warning("could not write into the run folder: %s", describe_os_error(error))


def _write_snapshot(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """What Hydra writes before a job (`hydra.output_subdir: null` in our configs) and `provenance.json`, written
    when the job's work begins (`rundir.mark_started`): `.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`."""
    snapshot = run_dir / ".hydra"
    write_text_atomic(snapshot / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text_atomic(snapshot / "hydra.yaml", OmegaConf.to_yaml(HydraConfig.instance().cfg))
    write_text_atomic(snapshot / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
    plain = OmegaConf.to_container(cfg, resolve=False)
    command = ["attrobust", str(hydra_cfg.job.name), *hydra_cfg.overrides.task]  # this job alone, no -m
    write_text_atomic(run_dir / PROVENANCE_FILE, json.dumps(provenance(plain, command), indent=1) + "\n")


def _mark_failed(run_dir: Path, message: str) -> None:
    """`failed.txt` for `report`; a folder that cannot be written (the fault itself, perhaps) keeps none."""
    _quietly(lambda: write_text_atomic(run_dir / FAILED_FILE, message + "\n"))


def _check_group_choices(overrides: Sequence[str], user_config_dir: str | None) -> None:
    """Unknown group options (dataset=foo) as one line with the valid choices, before Hydra composes."""
    extra = (Path(user_config_dir),) if user_config_dir else ()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        group = override.key_or_group
        if group not in (*GROUPS, "experiment") or override.is_delete():
            continue
        values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                  else [override.get_value_element_as_str()])
        valid = group_options(group, extra)
        for value in values:
            if value not in valid:
                kind = "preset (+experiment=NAME)" if group == "experiment" else group
                raise AttrobustError(f"unknown {kind} '{value}'; choose one of: {choices(valid)}")


def _describe_hydra_error(error: Exception) -> str:
    inner: BaseException | None = error
    seen: set[int] = set()
    while inner is not None and id(inner) not in seen:  # an AttrobustError raised inside a resolver (a missing
        seen.add(id(inner))                              # checkpoint, say); a chain may loop back on itself
        if isinstance(inner, AttrobustError):
            return str(inner)
        inner = inner.__cause__ or inner.__context__
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


def _description(path: Path) -> str:
    """The leading comment of a config (Hydra directives skipped), whole: it may run over several lines."""
    parts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @"):
            continue
        if not line.startswith("#"):
            break
        parts.append(line.lstrip("#").strip())
    return " ".join(part for part in parts if part)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
