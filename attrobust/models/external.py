"""Models you bring (`model=external`): evaluate, attack and explain a network attrobust did not train.

`model.source` names the network, in one of three forms:
- `torchvision:<name>` or `timm:<name>`: the architecture (built without weights, `num_classes` outputs), with the
  state dict of `model.weights` loaded by `torch.load(weights_only=True)` (tensors only: no code runs from it);
- a `torch.export` program (`.pt2`, saved with `torch.export.save`, batch size dynamic) or a TorchScript file (`.pt`,
  `.pth`, `.ts`, `.torchscript`, saved with `torch.jit.save`; deprecated by PyTorch, still read);
- `package.module:function`, an importable function returning an `nn.Module` (called with `model.kwargs`), and
  optionally `model.weights` as above.
The source is code the user chose to run (a TorchScript program, their own function); a weights file never is, and
neither is a `.pt2` file: `torch.export.load` unpickles some entries with `weights_only=False` (weights or constants
marked `use_pickle`, opaque objects, sample inputs that fail the safe load, archives of the older format) and an
AOTInductor entry holds compiled code, so `check_exported_archive` (attrobust/models/programs.py) reads the archive
first and accepts only a graph (JSON), raw tensor payloads, their JSON configs, strings, and sample inputs that load
with `weights_only=True`.

The network sees what it was trained on: images in [0, 1] from the dataset, resized to `model.image_size` (bilinear,
inside the model, so attacks and attributions stay in the dataset's pixels) and normalised with `model.mean` /
`model.std` (null: the dataset's). In-place ReLUs are made out-of-place (double backprop needs their inputs). One
forward pass of two blank images at load checks that the network runs on the dataset's images and finds activations
it calls as functions (F.relu in a forward: GoogLeNet, Inception v3), for which the analytic attack direction (the
gradient through the smooth surrogate) would be zero; a compiled network's activations (TorchScript, torch.export)
cannot be swapped either (`attrobust.attributions.surrogate.check_smoothable` says which). `evaluate` and `attack`
then estimate the direction instead (`direction=estimated`); everything else runs as on any model.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attributions.surrogate import functional_piecewise
from attrobust.errors import AttrobustError
from attrobust.models.normalize import ModelTraits, NormalizedModel
from attrobust.models.programs import load_exported, load_torchscript

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
EXPORT_SUFFIX = ".pt2"
HUB_PREFIXES = ("torchvision:", "timm:")


@dataclass(frozen=True)
class ExternalModel:
    """`conf/model/external.yaml`: where the network comes from and what input it expects."""

    source: str
    name: str = "external"
    weights: str | None = None                  # a state dict (torchvision:/timm:/function sources)
    num_classes: int | None = None              # outputs of a torchvision:/timm: architecture (None: the dataset's)
    mean: tuple[float, ...] | None = None       # the network's input normalisation (None: the dataset's)
    std: tuple[float, ...] | None = None
    image_size: tuple[int, int] | None = None   # [height, width] the network takes (None: the dataset's images)
    gradcam_layer: str | None = None            # the network's module Grad-CAM reads (None: its last with a conv)
    kwargs: Mapping[str, Any] | None = None     # for a package.module:function source

    def __post_init__(self) -> None:
        if not self.source or self.source == "???":
            raise ValueError("source is missing; e.g. model.source=torchvision:resnet18 model.weights=FILE, a "
                             "TorchScript file, or package.module:function")
        kind = self.kind
        if kind in ("torchscript", "exported") and self.weights is not None:
            raise ValueError(f"weights: {self.source} holds its weights; leave model.weights unset")
        if kind == "hub" and self.weights is None:
            raise ValueError(f"weights is missing for source={self.source}: give a state-dict file (attrobust never "
                             f"downloads; see docs/models.md, 'Bring your own model')")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"image_size must be [height, width], got {list(self.image_size)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both or neither (neither: the dataset's)")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def kind(self) -> str:
        if self.source.startswith(HUB_PREFIXES):
            return "hub"
        if self.source.endswith(EXPORT_SUFFIX):
            return "exported"
        if self.source.endswith(TORCHSCRIPT_SUFFIXES) or Path(self.source).is_file():
            return "torchscript"
        if ":" in self.source:
            return "function"
        raise ValueError(f"source={self.source}: not torchvision:<name>, timm:<name>, a TorchScript file (no such "
                         f"file) or package.module:function")

    def network(self, num_classes: int) -> nn.Module:
        """The network with its weights, on the CPU, in eval mode."""
        if self.kind == "torchscript":
            net = load_torchscript(Path(self.source))
        elif self.kind == "exported":
            return load_exported(Path(self.source))  # a graph of aten ops: no train/eval mode to set
        else:
            net = self._hub(num_classes) if self.kind == "hub" else self._function()
            if self.weights is not None:
                load_weights(net, Path(self.weights), self.source)
            for module in net.modules():
                if isinstance(module, nn.ReLU):
                    module.inplace = False
        return net.eval()

    def _hub(self, num_classes: int) -> nn.Module:
        library, _, name = self.source.partition(":")
        classes = self.num_classes or num_classes
        if library == "torchvision":
            import torchvision

            try:
                return torchvision.models.get_model(name, weights=None, num_classes=classes)
            except ValueError as error:
                raise AttrobustError(f"model.source={self.source}: torchvision has no model '{name}' (see "
                                     f"torchvision.models.list_models())") from error
        try:
            import timm
        except ImportError as error:
            raise AttrobustError(f"model.source={self.source} needs the timm package: "
                                 f"pip install 'attrobust[timm]'") from error
        if name not in timm.list_models():
            raise AttrobustError(f"model.source={self.source}: timm has no model '{name}' (see timm.list_models())")
        return timm.create_model(name, pretrained=False, num_classes=classes)

    def _function(self) -> nn.Module:
        module_name, _, function_name = self.source.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            raise AttrobustError(f"model.source={self.source}: cannot import {function_name} from {module_name} "
                                 f"({error}); is its package installed or on PYTHONPATH?") from error
        try:
            net = function(**dict(self.kwargs or {}))
        except Exception as error:  # noqa: BLE001 (the user's own code failed: say how, in one line)
            first = (str(error).splitlines() or [""])[0]
            raise AttrobustError(f"model.source={self.source} with model.kwargs={dict(self.kwargs or {})} raised "
                                 f"{type(error).__name__}: {first}") from error
        if not isinstance(net, nn.Module):
            raise AttrobustError(f"model.source={self.source} returned a {type(net).__name__}, not a torch.nn.Module")
        return net

    def files(self) -> list[Path]:
        """The files the network is read from (their contents are part of the evaluation's identity)."""
        listed = [self.source] if self.kind in ("torchscript", "exported") else []
        return [Path(name) for name in (*listed, *([self.weights] if self.weights else []))]


def load_weights(net: nn.Module, path: Path, source: str) -> None:
    """A state dict (tensors only, `weights_only=True`), or a checkpoint holding one under `state_dict` /
    `model_state` / `model`."""
    if not path.is_file():
        raise AttrobustError(f"model.weights={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises UnpicklingError, RuntimeError, ...: all mean one thing)
        raise AttrobustError(f"model.weights={path} is not a state dict of tensors ({type(error).__name__}); save "
                             f"one with torch.save(model.state_dict(), path)") from error
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise AttrobustError(f"model.weights={path} holds a {type(state).__name__}, not a state dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise AttrobustError(f"model.weights={path} does not fit {source} ({first}); check model.source and "
                             f"model.num_classes") from error


class Resized(nn.Module):
    """`net(resize(x))`: bilinear resizing to the network's input size inside the model (differentiable)."""

    def __init__(self, net: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.net, self.size = net, tuple(size)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net(x)


def build_external(settings: ExternalModel, mean: tuple[float, ...], std: tuple[float, ...],
                   image_shape: tuple[int, int, int], num_classes: int) -> NormalizedModel:
    """The external network, taking the dataset's float32 NCHW images in [0, 1]; `mean` / `std`: the dataset's, used
    when the model names none."""
    return wrap_network(settings.network(num_classes), settings.mean or mean, settings.std or std, image_shape,
                        settings.gradcam_layer, settings.image_size, f"model.source={settings.source}")


def wrap_network(net: nn.Module, mean: Sequence[float], std: Sequence[float], image_shape: tuple[int, int, int],
                 gradcam_layer: str | None = None, image_size: Sequence[int] | None = None,
                 named: str = "the model") -> NormalizedModel:
    """A network of your own as attrobust runs it: normalised inside (`mean` / `std`), resized to `image_size` when
    given, the layer CAM explainers read declared (`gradcam_layer`, default the last top-level block holding a
    convolution), its activations checked for a smooth surrogate on two images of `image_shape`."""
    inner: nn.Module = net
    prefix = ""
    if image_size is not None and tuple(image_size) != tuple(image_shape[1:]):
        inner, prefix = Resized(net, (int(image_size[0]), int(image_size[1]))), "net."
    layer = gradcam_layer or last_conv_block(net)
    traits = ModelTraits(cam_layer=None if layer is None else f"net.{prefix}{layer}")
    device = next((parameter.device for parameter in net.parameters()), torch.device("cpu"))
    model = NormalizedModel(inner, mean, std, traits).to(device).eval()  # on the network's device
    try:
        called = functional_piecewise(model, torch.zeros(2, *image_shape, device=device))
    except Exception as error:  # noqa: BLE001 (the user's network fails on the dataset's images: say which)
        raise AttrobustError(f"{named} fails on this dataset's images (2 x {' x '.join(map(str, image_shape))}): "
                             f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; check "
                             f"model.image_size, model.mean / model.std and the number of channels") from error
    model.traits = dataclasses.replace(traits, unswappable_activation=called)
    return model


def last_conv_block(net: nn.Module) -> str | None:
    """The last top-level child of `net` that holds a convolution (ResNet: layer4); None when there is none."""
    found = None
    for name, child in net.named_children():
        if isinstance(child, nn.Conv2d) or any(isinstance(m, nn.Conv2d) for m in child.modules()):
            found = name
    return found


def files_digest(paths: list[Path]) -> str:
    """SHA-256 of the files' contents, in order (the evaluation's identity of an external model)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]
