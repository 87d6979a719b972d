"""The RAR reference ResNet as the reference builds it for Flower-17 (`Flower/model.py`): one unit per stage."""

from __future__ import annotations

from torch import nn

from attrobust.models import MODELS
from attrobust.models.rar_resnet import RarResNet


@MODELS.register("rar_resnet_flower", cam_layer="act_last")  # the last unit's activated output, before pooling
def rar_resnet_flower(in_channels: int, image_size: tuple[int, int], num_classes: int, units_per_stage: int = 1,
                      pixel_scale: float = 255.0) -> nn.Module:
    return RarResNet(in_channels, num_classes, units_per_stage, pixel_scale)
