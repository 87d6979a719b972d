"""Atomic file writes: write a temporary file in the same folder, then `os.replace` it over the target.

A crash or an exception part-way leaves the previous file (or none), never a half-written one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, lambda target: target.write_text(text, encoding="utf-8"))


def save_torch_atomic(payload: Any, path: Path) -> None:
    _write_atomic(path, lambda target: torch.save(payload, target))
