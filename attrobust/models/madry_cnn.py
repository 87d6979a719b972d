"""The Madry et al. MNIST CNN used by the RAR reference code for MNIST and Fashion-MNIST.

conv 5x5x32 (same padding) - ReLU - maxpool 2 - conv 5x5x64 - ReLU - maxpool 2 - fc 1024 - ReLU - fc classes.
Pooling uses ceil mode, like TensorFlow's 'SAME' pooling in the reference. Activations are `nn.ReLU` modules so
the softplus surrogate of the attribution attacks can swap them on the same weights.

Initialisation (`init`):
- `reference`: as the reference's `MNIST/model.py` (`_weight_variable`, `_bias_variable`): every weight drawn from
  TensorFlow's `truncated_normal(stddev=0.1)` (a normal with std 0.1, redrawn outside 2 std, so its std is about
  0.088) and every bias 0.1. The draw is the same distribution as TensorFlow's, not its random stream. On in the
  `rar_mnist_*` and `rar_fashion_mnist_*` presets.
- `pytorch` (the default of the model config): PyTorch's layer defaults (Kaiming-uniform weights with a = sqrt(5),
  uniform biases, both within 1/sqrt(fan_in)): the fc 1024 layer's weights have std about 0.010 instead of 0.088.
  It trains the quick start (Adam 1e-3, cosine, 10 epochs) slightly better; docs/fidelity.md has the
  measured comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from attrobust.models import MODELS

Init = Literal["pytorch", "reference"]
REFERENCE_WEIGHT_STD = 0.1   # TensorFlow truncated_normal(stddev=0.1): cut at 2 std
REFERENCE_BIAS = 0.1


class MadryCNN(nn.Module):

    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int,
                 conv_channels: Sequence[int] = (32, 64), hidden_units: int = 1024, init: Init = "pytorch") -> None:
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
        if init == "reference":
            reference_init_(self)
        elif init != "pytorch":
            raise ValueError(f"init must be one of pytorch, reference, got '{init}'")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def reference_init_(model: nn.Module) -> None:
    """The reference's initialisation of every conv and linear layer: weights N(0, 0.1) truncated at +-2 std (as
    TensorFlow's truncated_normal, which redraws values outside), biases 0.1."""
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(layer.weight, std=REFERENCE_WEIGHT_STD, a=-2 * REFERENCE_WEIGHT_STD,
                                  b=2 * REFERENCE_WEIGHT_STD)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, REFERENCE_BIAS)


@MODELS.register("madry_cnn", cam_layer="features.4")  # the second conv + ReLU, before pooling
def madry_cnn(in_channels: int, image_size: tuple[int, int], num_classes: int,
              conv_channels: Sequence[int] = (32, 64), hidden_units: int = 1024, init: Init = "pytorch") -> nn.Module:
    """The reference architecture (32/64 channels, 1024 hidden units)."""
    return MadryCNN(in_channels, image_size, num_classes, conv_channels, hidden_units, init)
