"""Models: `build_model(cfg.model, spec, image_shape, num_classes)` gives logits for float32 NCHW images in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from attrobust.data.base import DatasetSpec
from attrobust.errors import AttrobustError
from attrobust.models.normalize import ModelTraits, Normalize, NormalizedModel, traits_of
from attrobust.registry import Registry, import_components

# A builder `(in_channels, image_size, num_classes, **settings) -> nn.Module` registered with what it declares:
# `cam_layer` (the module path in the network that Grad-CAM reads) and `lipschitz` (1-Lipschitz by construction).
MODELS: Registry[nn.Module] = Registry("model")

# external: a model you bring, not built here; normalize and programs: what models share
import_components(__name__, __path__, skip=("external", "normalize", "programs"))


def build_model(cfg: Mapping[str, Any], spec: DatasetSpec, image_shape: tuple[int, int, int],
                num_classes: int) -> NormalizedModel:
    """The registered network for `cfg`, wrapped with the dataset's normalisation."""
    channels, height, width = image_shape
    check_normalisation(spec, channels)
    net = MODELS.build(cfg, in_channels=channels, image_size=(height, width), num_classes=num_classes)
    declared = MODELS.declared(str(cfg["name"]))
    layer = declared.get("cam_layer")
    traits = ModelTraits(cam_layer=None if layer is None else f"net.{layer}",
                         # 1-Lipschitz by construction: the normalisation scales it by 1 / std
                         lipschitz_constant=1.0 / min(spec.std) if declared.get("lipschitz") else None)
    return NormalizedModel(net, spec.mean, spec.std, traits)


def check_normalisation(spec: DatasetSpec, channels: int) -> None:
    """The dataset's mean and std give one value, or one per channel of its images."""
    if {len(spec.mean), len(spec.std)} - {1, channels}:
        raise AttrobustError(f"dataset mean/std have {len(spec.mean)}/{len(spec.std)} entries "
                             f"but the images have {channels} channel(s) (give 1 value or {channels})")


def is_lipschitz(net: nn.Module) -> bool:
    """A network built from deel-torchlip's 1-Lipschitz layers (`model=lipschitz_cnn`)."""
    return type(net).__module__.startswith("deel.torchlip")


def export_plain(model: NormalizedModel) -> NormalizedModel:
    """The model with a deel-torchlip network exported to plain layers (`vanilla_export`: fixed weights, no
    re-normalisation at every pass), for evaluation; other models unchanged."""
    if is_lipschitz(model.net) and hasattr(model.net, "vanilla_export"):
        model.net = model.net.vanilla_export()  # the traits stay: the same function
    return model


__all__ = ["MODELS", "ModelTraits", "Normalize", "NormalizedModel", "build_model", "check_normalisation",
           "export_plain", "is_lipschitz", "traits_of"]
