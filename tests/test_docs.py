"""The documentation site builds in strict mode (broken links, missing pages or API references fail), and its
component catalogue, generated from the registries, names every registered component."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from attrobust.parts import part_classes
from attrobust.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def registries() -> list[Registry]:
    from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS
    from attrobust.data import DATASETS
    from attrobust.explainers import EXPLAINERS
    from attrobust.faithfulness import FAITHFULNESS
    from attrobust.metrics import METRICS
    from attrobust.models import MODELS
    from attrobust.optim import OPTIMIZERS
    from attrobust.regularizers import REGULARIZERS
    from attrobust.stability import STABILITY

    return [DATASETS, MODELS, REGULARIZERS, EXPLAINERS, OPTIMIZERS, PREDICTION_ATTACKS, ATTRIBUTION_ATTACKS, METRICS,
            STABILITY, FAITHFULNESS]


def test_the_docs_build_strictly_and_the_catalogue_lists_every_component(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    if not (ROOT / "mkdocs.yml").is_file():
        pytest.skip("an installed package without its docs")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]  # (-q would hide the warnings strict mode counts)
    page = (tmp_path / "site" / "catalogue" / "index.html").read_text(encoding="utf-8")
    names = set(re.findall(r"<code>([a-z0-9_]+)</code>", page))
    missing = {name for registry in registries() for name in registry.names()} - names
    assert not missing
    assert {part.registry_name for part in part_classes()} <= names
    assert (tmp_path / "site" / "api" / "index.html").is_file()
