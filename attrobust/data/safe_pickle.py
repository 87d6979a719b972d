"""Reading pickles that hold only numpy arrays and plain containers, without running code from them.

`pickle.load` calls whatever function a file names, so a crafted `train.p` in a data folder runs code when loaded.
`load_arrays` admits only the few globals that pickled numpy arrays, dtypes and scalars need (under both numpy 1's
`numpy.core` and numpy 2's `numpy._core` spellings, and `_codecs.encode`, which protocol 2 uses for bytes); anything
else stops the load before it is called. Dicts, lists, tuples, strings and numbers need no globals.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from attrobust.errors import AttrobustError


def _numpy_reconstructors() -> dict[str, Any]:
    """The functions numpy's own pickles name, taken from numpy itself (no import of the deprecated numpy.core)."""
    array = np.zeros(1, dtype=np.uint8)
    return {"_reconstruct": array.__reduce__()[0], "_frombuffer": array.__reduce_ex__(5)[0],
            "scalar": np.float64(0).__reduce__()[0]}


def _allowed() -> dict[tuple[str, str], Any]:
    import _codecs

    functions = _numpy_reconstructors()
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = functions["_reconstruct"]
        allowed[(f"{core}.multiarray", "scalar")] = functions["scalar"]
        allowed[(f"{core}.numeric", "_frombuffer")] = functions["_frombuffer"]
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name in ("UInt8DType", "Int64DType", "Int32DType", "Float64DType", "Float32DType"):  # numpy >= 1.25
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a function or class outside the allow-list."""


class ArrayUnpickler(pickle.Unpickler):
    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if ArrayUnpickler._ALLOWED is None:
            ArrayUnpickler._ALLOWED = _allowed()
        try:
            return ArrayUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_arrays(path: Path, what: str) -> Any:
    """The content of a pickle of numpy arrays (`what` names it in errors); refuses any other global, unread."""
    try:
        with open(path, "rb") as handle:
            return ArrayUnpickler(handle).load()
    except RefusedGlobal as refused:
        raise AttrobustError(f"refused {what} {path}: it names {refused}, which is not part of a numpy array (a pickle "
                             f"can run code, so only numpy arrays, dtypes and plain containers are read)") from None
    except OSError as error:
        raise AttrobustError(f"cannot read {what} {path}: {error.strerror or error}") from error
    except Exception as error:  # noqa: BLE001 - anything else a damaged or crafted file provokes: one line
        raise AttrobustError(f"corrupt {what} {path} ({type(error).__name__}: {error})") from error
