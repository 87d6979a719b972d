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

from attrobust.models import madry_cnn, rar_resnet, rar_resnet_flower, resnet18, small_cnn  # noqa: E402,F401


def build_model(cfg: Mapping[str, Any], spec: DatasetSpec, image_shape: tuple[int, int, int],
                num_classes: int) -> NormalizedModel:
    """The registered network for `cfg`, wrapped with the dataset's normalisation."""
    channels, height, width = image_shape
    if {len(spec.mean), len(spec.std)} - {1, channels}:
        raise AttrobustError(f"dataset mean/std have {len(spec.mean)}/{len(spec.std)} entries "
                             f"but the images have {channels} channel(s) (give 1 value or {channels})")
    net = MODELS.build(cfg, in_channels=channels, image_size=(height, width), num_classes=num_classes)
    return NormalizedModel(net, spec.mean, spec.std)


__all__ = ["MODELS", "Normalize", "NormalizedModel", "build_model"]
