"""Where a result came from: the code's git commit, a hash of the resolved config, the command, versions, seed."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the attrobust checkout in use (with '+dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit[:12]}+dirty" if dirty else commit[:12]


PROVENANCE_FILE = "provenance.json"  # what ran, with which versions: written when a job's work begins

def config_hash(config: Any) -> str:
    """A short, stable hash of a plain (resolved) config."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas", "scipy", "attrobust")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(config: Mapping[str, Any], command: list[str]) -> dict[str, Any]:
    """What a run dir records besides Hydra's .hydra/ snapshot: the command that reproduces this job, the process's
    own command line, code, versions, seed, machine."""
    return {"command": command, "argv": [Path(sys.argv[0]).name, *sys.argv[1:]], "git_commit": git_commit(),
            "config_hash": config_hash(config), "seed": config.get("seed"), "packages": package_versions(),
            "host": platform.node(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch_threads": _threads()}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def run_id(run_dir: Path) -> str:
    """A run's id: its dir relative to the working directory when it is inside it, else absolute."""
    resolved = run_dir.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)
