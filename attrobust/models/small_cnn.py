"""The Madry CNN at a quarter of the width (16/32 channels, fc 256): about 3x cheaper, for CPU-sized studies."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from attrobust.models import MODELS
from attrobust.models.madry_cnn import Init, MadryCNN


@MODELS.register("small_cnn", cam_layer="features.4")  # the second conv + ReLU, before pooling
def small_cnn(in_channels: int, image_size: tuple[int, int], num_classes: int,
              conv_channels: Sequence[int] = (16, 32), hidden_units: int = 256, init: Init = "pytorch") -> nn.Module:
    return MadryCNN(in_channels, image_size, num_classes, conv_channels, hidden_units, init)
