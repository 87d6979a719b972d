"""The Madry et al. MNIST CNN used by the RAR reference code for MNIST and Fashion-MNIST.

conv 5x5x32 (same padding) - ReLU - maxpool 2 - conv 5x5x64 - ReLU - maxpool 2 - fc 1024 - ReLU - fc classes.
Pooling uses ceil mode, like TensorFlow's 'SAME' pooling in the reference. Activations are `nn.ReLU` modules so
the softplus surrogate of the attribution attacks can swap them on the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from attrobust.models import MODELS


class MadryCNN(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int,
                 conv_channels: Sequence[int] = (32, 64), hidden_units: int = 1024) -> None:
        super().__init__()
        if len(conv_channels) != 2 or min(conv_channels) <= 0 or hidden_units <= 0:
            raise ValueError(f"conv_channels must be two positive widths and hidden_units positive, "
                             f"got {tuple(conv_channels)} and {hidden_units}")
        first, second = conv_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(first, second, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        height, width = (math.ceil(math.ceil(side / 2) / 2) for side in image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(second * height * width, hidden_units), nn.ReLU(),
            nn.Linear(hidden_units, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@MODELS.register("madry_cnn")
def madry_cnn(in_channels: int, image_size: tuple[int, int], num_classes: int,
              conv_channels: Sequence[int] = (32, 64), hidden_units: int = 1024) -> nn.Module:
    """The reference architecture (32/64 channels, 1024 hidden units)."""
    return MadryCNN(in_channels, image_size, num_classes, conv_channels, hidden_units)
