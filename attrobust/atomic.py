"""Atomic file writes: write a temporary file in the same folder, then `os.replace` it over the target.

A crash or an exception part-way leaves the previous file (or none), never a half-written one. The temporary file is
created anew (`O_EXCL`) and never through a symbolic link (`O_NOFOLLOW`), and `os.replace` puts the file in place of
a link named like the target instead of writing where the link points: a received run folder cannot redirect a write.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

LOW_SPACE_BYTES = 64 * 2**20  # a failed checkpoint write with less free space than this is called a full disk


NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """`write(handle)` fills a new temporary file beside `path`, which then replaces `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)  # a killed write's, or a link planted under this name: never written through
    try:
        with os.fdopen(os.open(partial, NEW_FILE_FLAGS, 0o644), "wb") as handle:
            write(handle)
        os.replace(partial, path)
    except OSError as error:  # a full disk or a read-only folder: name the file the user knows, not the temporary one
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        partial.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_torch_atomic(payload: Any, path: Path) -> None:
    def save(target: IO[bytes]) -> None:
        try:
            torch.save(payload, target)
        except RuntimeError as error:  # torch's C++ writer reports a failed write (full disk, ...) as RuntimeError
            if not any(sign in str(error) for sign in ("inline_container", "iostream", "write")):
                raise  # not a write failure: a bug keeps its traceback
            full = shutil.disk_usage(path.parent).free < LOW_SPACE_BYTES  # its message does not say why
            code = errno.ENOSPC if full else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from error

    _write_atomic(path, save)


def read_csv_exact(path: Path) -> pd.DataFrame:
    """A CSV written by `write_text_atomic(path, frame.to_csv())`, its floats read back bit for bit (pandas 3 does
    this by default and deprecates the option that pandas 2 needs for it)."""
    if int(pd.__version__.split(".")[0]) >= 3:
        return pd.read_csv(path)
    return pd.read_csv(path, float_precision="round_trip")
