"""Models: `build_model(cfg.model, spec, image_shape)` gives logits for float32 NCHW images in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from attrobust.data.base import DatasetSpec
from attrobust.errors import AttrobustError
from attrobust.models.normalize import Normalize, NormalizedModel
from attrobust.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")

from attrobust.models import madry_cnn, small_cnn  # noqa: E402,F401


def build_model(cfg: Mapping[str, Any], spec: DatasetSpec, image_shape: tuple[int, int, int]) -> NormalizedModel:
    """The registered network for `cfg`, wrapped with the dataset's normalisation."""
    channels, height, width = image_shape
    if len(spec.mean) != channels or len(spec.std) != channels:
        raise AttrobustError(f"dataset mean/std have {len(spec.mean)}/{len(spec.std)} entries "
                             f"but the images have {channels} channel(s)")
    net = MODELS.build(cfg, in_channels=channels, image_size=(height, width), num_classes=spec.num_classes)
    return NormalizedModel(net, spec.mean, spec.std)


__all__ = ["MODELS", "Normalize", "NormalizedModel", "build_model"]
