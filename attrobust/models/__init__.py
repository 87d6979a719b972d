"""Models: `build_model(cfg.model, spec, image_shape, num_classes)` gives logits for float32 NCHW images in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from attrobust.data.base import DatasetSpec
from attrobust.errors import AttrobustError
from attrobust.models.normalize import Normalize, NormalizedModel
from attrobust.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")

from attrobust.models import (  # noqa: E402,F401
    lipschitz_cnn, madry_cnn, rar_resnet, rar_resnet_flower, resnet18, small_cnn)


def build_model(cfg: Mapping[str, Any], spec: DatasetSpec, image_shape: tuple[int, int, int],
                num_classes: int) -> NormalizedModel:
    """The registered network for `cfg`, wrapped with the dataset's normalisation."""
    channels, height, width = image_shape
    check_normalisation(spec, channels)
    net = MODELS.build(cfg, in_channels=channels, image_size=(height, width), num_classes=num_classes)
    model = NormalizedModel(net, spec.mean, spec.std)
    if is_lipschitz(net):  # 1-Lipschitz by construction: the normalisation scales it by 1 / std
        model.lipschitz_constant = 1.0 / min(spec.std)
    return model


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
        constant = model.__dict__.get("lipschitz_constant")
        model.net = model.net.vanilla_export()
        if constant is not None:
            model.lipschitz_constant = constant
    return model


__all__ = ["MODELS", "Normalize", "NormalizedModel", "build_model", "check_normalisation", "export_plain", "is_lipschitz"]
