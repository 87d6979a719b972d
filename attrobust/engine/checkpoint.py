"""Checkpoints: tensors and plain Python types only, written atomically, read with `weights_only=True`.

Two kinds share one layout: `last.pt` (kind "train_state": also the optimizer, RNG state and history, rewritten
every epoch for automatic resume) and `model.pt` (kind "model": the final weights). Both carry the resolved model
and dataset configs, so `attrobust evaluate checkpoint=...` can rebuild the network without the training config.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from attrobust.atomic import save_torch_atomic
from attrobust.config import not_a_checkpoint
from attrobust.errors import AttrobustError

FORMAT = "attrobust-checkpoint"
VERSION = 1
MODEL_FILE = "model.pt"
TRAIN_STATE_FILE = "last.pt"


def save_checkpoint(payload: dict[str, Any], path: Path, kind: str) -> None:
    save_torch_atomic({"format": FORMAT, "version": VERSION, "kind": kind, **payload}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint of either kind; missing, corrupt or foreign files are one clear AttrobustError."""
    if not path.is_file():
        raise AttrobustError(f"checkpoint not found: {path}" if not path.exists() else not_a_checkpoint(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError,
            zipfile.BadZipFile) as error:
        raise AttrobustError(describe_load_error(path, error)) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AttrobustError(f"{path} is not an attrobust checkpoint")
    if payload.get("version") != VERSION:
        raise AttrobustError(f"{path} has checkpoint version {payload.get('version')}; this attrobust reads {VERSION}")
    return payload


def describe_load_error(path: Path, error: BaseException) -> str:
    """One line for a checkpoint torch cannot read safely: never PyTorch's advice to load it with weights_only=False
    (which would run whatever code the file names)."""
    text = str(error)
    refused = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if refused:
        return (f"refused checkpoint {path}: it names {refused.group(1)}, which is not a tensor or a plain value; "
                f"attrobust never runs code from a checkpoint (this is not an attrobust checkpoint, or it was altered)")
    if isinstance(error, PermissionError):
        return f"cannot read checkpoint {path}: {error.strerror}; check its permissions"
    return (f"corrupt checkpoint {path}: not a complete torch file (cut short or damaged: "
            f"{type(error).__name__}); copy it again, or for a run's last.pt, delete it or pass train.resume=false "
            f"to start over")


# what `evaluate` and `attack` read from a checkpoint of either kind, with the type each must have
MODEL_FIELDS = {"model_state": dict, "model_cfg": dict, "dataset_cfg": dict, "reg_cfg": dict, "run_id": str,
                "config_hash": str}


def check_model_fields(payload: dict[str, Any], path: Path) -> None:
    """One line naming the first field a model checkpoint lacks (or holds in the wrong type)."""
    for key, kind in MODEL_FIELDS.items():
        if not isinstance(payload.get(key), kind):
            found = "no" if key not in payload else f"a {type(payload[key]).__name__} as"
            raise AttrobustError(f"{path} is an incomplete attrobust checkpoint: {found} '{key}'; pass a model.pt or "
                                 f"last.pt written by attrobust train")
    for key in ("model_cfg", "dataset_cfg", "reg_cfg"):
        if not isinstance(payload[key].get("name"), str):
            raise AttrobustError(f"{path} is an incomplete attrobust checkpoint: '{key}' has no name; pass a model.pt "
                                 f"or last.pt written by attrobust train")


def check_finite_weights(state: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or infinity: a diverged model would be 'measured' as anything at all."""
    tensors = [(key, value) for key, value in state.items() if isinstance(value, torch.Tensor)]
    bad = [(key, int((~torch.isfinite(value)).sum())) for key, value in tensors
           if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        total = sum(value.numel() for _, value in tensors)
        raise AttrobustError(f"{path} holds non-finite weights ({sum(n for _, n in bad):,} of {total:,} values, e.g. "
                             f"in {bad[0][0]}): the run diverged and nothing measured on it would mean anything; "
                             f"train again with a smaller optim.lr")


def find_model_checkpoint(path: Path) -> Path:
    """A checkpoint file as given, or `model.pt` inside a run dir. A run dir with only `last.pt` holds a training
    that has not finished: refused in one line (evaluating it by accident reads as the trained model's numbers);
    pass that file itself to evaluate the unfinished state."""
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        if (path / TRAIN_STATE_FILE).is_file():
            raise AttrobustError(f"{path} has no {MODEL_FILE}: its training has not finished (run the same train "
                                 f"command again to resume it), or pass checkpoint={path / TRAIN_STATE_FILE} to "
                                 f"evaluate the unfinished state")
        raise AttrobustError(f"no {MODEL_FILE} or {TRAIN_STATE_FILE} in {path}; pass a training run dir "
                             f"(outputs/train/...) or a .pt file")
    if not path.exists():
        raise AttrobustError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise AttrobustError(not_a_checkpoint(path))
    return path
