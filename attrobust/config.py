"""Where the configs live, the OmegaConf resolvers they use, and turning a composed config into plain values."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import attrobust
from attrobust.errors import AttrobustError

GROUPS = ("dataset", "model", "reg", "attack", "optim", "explainer", "logger")
# the keys a multirun sweeps (`reg.weight` of `-m reg.weight=0.1,1`), set by the CLI for the jobs' folder names; an
# environment variable, so that jobs launched in other processes (joblib, submitit, SLURM) see it too
SWEPT_KEYS_ENV = "ATTROBUST_SWEPT_KEYS"


def config_dir() -> Path:
    """`attrobust/conf` in an installed wheel, else `conf/` at the top of the checkout."""
    package = Path(attrobust.__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise AttrobustError(f"attrobust's configs are missing (looked in {package / 'conf'}); reinstall attrobust")


def group_options(group: str, extra_dirs: tuple[Path, ...] = ()) -> list[str]:
    """The option names of a config group: the YAML file names in `conf/<group>/` and any user config dirs.

    Files whose names start with '_' hold settings that options include; they are not options themselves.
    """
    names = {path.stem for folder in (config_dir(), *extra_dirs) for path in (folder / group).glob("*.yaml")
             if not path.stem.startswith("_")}
    return sorted(names)


def run_dir_of(checkpoint: str | None) -> str:
    """The training run dir that holds `checkpoint` (a run dir or a file in one; `outputs` without one: a model of
    your own, `model=external`); a checkpoint that does not exist stops the command before Hydra creates any folder
    for it."""
    if checkpoint is None:
        return "outputs"
    path = Path(checkpoint)
    if not path.exists():
        raise AttrobustError(f"checkpoint not found: {path}; pass checkpoint=RUN_DIR (outputs/train/...) or a .pt")
    if not (path.is_dir() or path.is_file()):
        raise AttrobustError(not_a_checkpoint(path))
    return str(path if path.is_dir() else path.parent)


def not_a_checkpoint(path: Path) -> str:
    """The message for a checkpoint path that exists but is neither a run folder nor a file (a device, a pipe)."""
    return (f"checkpoint={path} is neither a run folder nor a file; pass checkpoint=RUN_DIR (outputs/train/...) or "
            f"a .pt file")


def swept_values(task_overrides: Iterable[str], *shown: str) -> str:
    """'_reg.weight_0.1_seed_1': this job's values of the swept keys, for its folder name ('' when nothing is swept);
    keys in `shown` are already part of the name. Characters other than letters, digits and `._+-` become '-', so
    that the folder can be passed back as an override value (checkpoint=<folder>) without quoting. A path value
    (checkpoint=<run folder>) is named by its last part: the parts before it are the same for every job."""
    swept = set(filter(None, os.environ.get(SWEPT_KEYS_ENV, "").split(",")))
    parts = []
    for item in task_overrides:
        key, _, value = str(item).lstrip("+~").partition("=")
        if key in swept and key not in shown:
            value = value.rstrip("/").rpartition("/")[2] or value
            parts.append(re.sub(r"[^A-Za-z0-9._+-]", "-", f"{key}_{value}")[:60])
    return "".join(f"_{part}" for part in parts)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("attrobust.run_dir"):
        OmegaConf.register_new_resolver("attrobust.run_dir", run_dir_of)
    if not OmegaConf.has_resolver("attrobust.swept"):
        OmegaConf.register_new_resolver("attrobust.swept", swept_values)


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Resolve every interpolation and return plain dicts and lists (what components are built from)."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        raise AttrobustError(describe_config_error(error)) from error
    assert isinstance(plain, dict)
    return plain  # type: ignore[return-value]


def describe_config_error(error: OmegaConfBaseException) -> str:
    """One line for an OmegaConf error, naming the key."""
    key = getattr(error, "full_key", None)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    missing = re.search(r"Missing mandatory value: ?([\w.]+)", message)
    if missing or (type(error).__name__ == "MissingMandatoryValue" and key):
        name = missing.group(1) if missing else key
        if key and (key == name or key.endswith("." + name)):
            name = key  # the full key (dataset.path), not only its last part
        return f"missing value for '{name}'; pass {name}=..."
    return f"{message} (key: {key})" if key and key not in message else message


def without_logger(cfg: DictConfig) -> DictConfig:
    """A command's config as its task reads it: without the trackers' block (`logger:`, which changes no number),
    struct as Hydra gives it."""
    if "logger" not in cfg:
        return cfg
    copy = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "logger"])
    OmegaConf.set_struct(copy, OmegaConf.is_struct(cfg))
    return copy
