"""Networks saved as programs (`model=external`, attrobust/models/external.py): TorchScript files and `torch.export`
archives, read without running code from them. A `torch.save` file is refused as a network (it would be unpickled);
a `.pt2` archive is read first by `check_exported_archive`, which accepts only a graph (JSON), raw tensor payloads,
their JSON configs, strings, and sample inputs that load with `weights_only=True`, since `torch.export.load` unpickles
some entries with `weights_only=False` and an AOTInductor entry holds compiled code."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from attrobust.errors import AttrobustError


def load_torchscript(path: Path) -> nn.Module:
    if not path.is_file():
        raise AttrobustError(f"model.source={path}: no such file")
    if saved_by_torch_save(path):
        raise AttrobustError(f"model.source={path} is a torch.save file (a pickled module or a state dict), which "
                             f"attrobust never unpickles as a network; give a torch.export program (.pt2: "
                             f"torch.export.save(torch.export.export(net, (x,)), path)), or the network's code "
                             f"(package.module:function, torchvision:<name>, timm:<name>) with model.weights={path} "
                             f"holding its state dict")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise AttrobustError(f"model.source={path} is not a TorchScript file ({str(error).splitlines()[0]}); save "
                             f"one with torch.jit.save, or give torchvision:<name> / timm:<name> with "
                             f"model.weights=<state dict>") from error


def saved_by_torch_save(path: Path) -> bool:
    """A zip written by torch.save (data.pkl, no TorchScript code/ folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):
        return False
    return "data.pkl" in entries and not any(entry.startswith("code/") for entry in entries)


# the entries of a torch.export archive that load without unpickling anything (names inside its top folder)
SAFE_EXPORT_ENTRIES = re.compile(r"archive_format|archive_version|byteorder|\.data/[\w.]+|models/[\w.]+\.json|"
                                 r"data/weights/(weight_\d+|[\w.]+_weights_config\.json)|"
                                 r"data/constants/(tensor_\d+|[\w.]+_constants_config\.json)|"
                                 r"data/sample_inputs/[\w.]+\.pt|extra/[\w./-]+")


def check_exported_archive(path: Path) -> None:
    """Refuse, with one line, a `.pt2` file that `torch.export.load` would unpickle anything from (see the module
    doc); what passes is read by torch as JSON, raw tensors, strings and a `weights_only` load."""
    def refuse(why: str) -> AttrobustError:
        return AttrobustError(f"model.source={path} is refused: {why}; attrobust loads only torch.export programs "
                              f"whose weights are plain tensors (torch.export.save of an exported nn.Module)")

    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if not name.endswith("/")]
            tops = {name.split("/", 1)[0] for name in names}
            if len(tops) != 1 or any("/" not in name for name in names):
                raise refuse("not a torch.export archive (one top folder holding its entries)")
            inner = {name.split("/", 1)[1]: name for name in names}
            if "archive_format" not in inner:
                raise refuse("an archive of the older torch.export format, whose loader unpickles it (save it again "
                             "with this torch)")
            for entry, name in inner.items():
                if not SAFE_EXPORT_ENTRIES.fullmatch(entry):
                    raise refuse(f"its entry {entry} is not a graph, a tensor or a string (compiled code or a "
                                 f"pickled object)")
                if entry.endswith("_config.json"):
                    config = json.loads(archive.read(name)).get("config", {})
                    for key, meta in config.items():
                        if meta.get("use_pickle") is not False or not re.fullmatch(r"(weight|tensor)_\d+",
                                                                                    str(meta.get("path_name"))):
                            raise refuse(f"{entry} stores '{key}' as a pickled object")
                elif entry.startswith("data/sample_inputs/"):
                    torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
    except AttrobustError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, RuntimeError) as error:
        raise refuse(f"not a readable torch.export archive ({type(error).__name__})") from None
    except Exception as error:  # noqa: BLE001 (the safe unpickler refusing an object: pickle.UnpicklingError & co)
        raise refuse(f"its sample inputs hold more than tensors ({type(error).__name__})") from None


def load_exported(path: Path) -> nn.Module:
    if not path.is_file():
        raise AttrobustError(f"model.source={path}: no such file")
    check_exported_archive(path)
    try:
        program = torch.export.load(str(path))
        return Exported(program.module(), fixed_batch(program))
    except Exception as error:  # noqa: BLE001 (a foreign or broken file fails in many ways: all mean one thing)
        raise AttrobustError(f"model.source={path} is not a torch.export program ({type(error).__name__}); save one "
                             f"with torch.export.save(torch.export.export(net, (x,)), path)") from error


def fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    """The batch size a program was exported for when it is fixed (no `dynamic_shapes` for dimension 0), else None."""
    inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            value = node.meta.get("val")
            first = value.shape[0] if isinstance(value, Tensor) and value.dim() else None
            return first if isinstance(first, int) else None
    return None


class Exported(nn.Module):
    """A `torch.export` program's module: it runs as exported (batch norm, dropout in the mode it was exported in,
    eval for a trained network), so `.train()` / `.eval()` stop here instead of failing inside it. A program exported
    for a fixed batch size B is fed batches of exactly B: a batch is cut in pieces of B, the last one filled up with
    copies of its last image, and the extra outputs dropped (differentiable, so attacks and explainers run as on any
    model, in more passes)."""

    def __init__(self, program: nn.Module, batch: int | None = None) -> None:
        super().__init__()
        self.program, self.batch = program, batch

    def train(self, mode: bool = True) -> Exported:
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.batch is None or len(x) == self.batch:
            return self.program(x)
        outputs = []
        for start in range(0, len(x), self.batch):  # pieces of the program's one batch size
            piece = x[start:start + self.batch]
            short = self.batch - len(piece)
            if short:
                piece = torch.cat([piece, piece[-1:].expand(short, *piece.shape[1:])])
            outputs.append(self.program(piece)[:self.batch - short])
        return torch.cat(outputs)
