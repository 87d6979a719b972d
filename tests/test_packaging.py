"""The wheel ships conf/ (as attrobust/conf) and the embedded dataset, and works outside a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_wheel_runs_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
                   cwd=ROOT, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("attrobust-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {str(p.relative_to(ROOT)) for p in (ROOT / "conf").rglob("*.yaml")}
    assert {f"attrobust/{name}" for name in conf} <= names
    assert "attrobust/data/mnist_mini.npz" in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "from attrobust.config import config_dir; print(config_dir())"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where) == target / "attrobust" / "conf"
    shown = subprocess.run([sys.executable, "-m", "attrobust", "train", "dataset=fashion_mnist", "--cfg", "job"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert "name: fashion_mnist" in shown


def test_license_and_citation_match_the_package():
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == project["version"]
    assert citation["license"] == project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
