"""The RAR reference ResNet for GTSRB and Flower-17 (`GTSRB/model.py`, `Flower/model.py`), in PyTorch.

Per-image standardisation (inside the model, on [0, 255] pixels) - conv 3x3 16 - three stages of pre-activation
residual units with filters 16 / 32 / 64 and strides 1 / 2 / 2 (`units_per_stage` units each: 2 for GTSRB, 1 for
Flower) - leaky ReLU - global average pool - fully connected. No batch norm, no conv biases, leaky ReLU slope 0.1.
As the reference (after the TensorFlow ResNet it is based on):
- the first unit of stage 1 activates before the shortcut branches off, the others activate on the residual path;
- a unit that changes width average-pools the shortcut (window = stride, 'VALID') and zero-pads its channels;
- convolutions pad like TensorFlow's 'SAME' (for stride 2 on an even size: one row and column after, none before);
- initialisation: conv weights N(0, sqrt(2 / (3 * 3 * out))), fc weights U(+-sqrt(3 / in)) (unit scaling), bias 0.
Activations are `nn.LeakyReLU` modules, so the softplus surrogate of the attribution attacks swaps them for
0.1 x + 0.9 softplus(x), the reference's smooth counterpart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.models import MODELS

FILTERS = (16, 16, 32, 64)
STRIDES = (1, 2, 2)
LEAK = 0.1


class PerImageStandardization(nn.Module):
    """TensorFlow's `per_image_standardization` of `pixel_scale * x`: (v - mean) / max(std, 1 / sqrt(numel)).

    The reference feeds [0, 255] pixels (pixel_scale 255); the result differs from standardising [0, 1] pixels only
    through the floor on the deviation. The floor is applied to the variance before the square root (equal values,
    and a finite gradient for a constant image).
    """

    def __init__(self, pixel_scale: float = 255.0) -> None:
        super().__init__()
        if not 0 < pixel_scale < math.inf:
            raise ValueError(f"pixel_scale must be positive and finite (255: the reference's [0, 255] pixels), got "
                             f"{pixel_scale}")
        self.pixel_scale = pixel_scale

    def forward(self, x: Tensor) -> Tensor:
        v = x * self.pixel_scale
        dims = (1, 2, 3)
        mean = v.mean(dim=dims, keepdim=True)
        variance = (v.square().mean(dim=dims, keepdim=True) - mean.square()).clamp_min(1.0 / v[0].numel())
        return (v - mean) / variance.sqrt()


class SameConv2d(nn.Conv2d):
    """A bias-free square convolution padded like TensorFlow's 'SAME' (extra padding after, not before)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=False)
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / (kernel_size * kernel_size * out_channels)))

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):   # F.pad order: (left, right, top, bottom)
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ResidualUnit(nn.Module):
    def __init__(self, in_filters: int, out_filters: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.act_in = nn.LeakyReLU(LEAK)
        self.conv1 = SameConv2d(in_filters, out_filters, 3, stride)
        self.act_mid = nn.LeakyReLU(LEAK)
        self.conv2 = SameConv2d(out_filters, out_filters, 3, 1)
        self.stride = stride
        self.channel_pad = (out_filters - in_filters) // 2 if out_filters != in_filters else None

    def forward(self, x: Tensor) -> Tensor:
        if self.activate_before_residual:
            x = shortcut = self.act_in(x)
        else:
            shortcut, x = x, self.act_in(x)
        x = self.conv2(self.act_mid(self.conv1(x)))
        if self.channel_pad is not None:
            shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.channel_pad, self.channel_pad))
        return x + shortcut


class RarResNet(nn.Module):

    def __init__(self, in_channels: int, num_classes: int, units_per_stage: int, pixel_scale: float) -> None:
        super().__init__()
        if units_per_stage <= 0:
            raise ValueError(f"units_per_stage must be positive, got {units_per_stage}")
        self.standardize = PerImageStandardization(pixel_scale)
        self.init_conv = SameConv2d(in_channels, FILTERS[0], 3, 1)
        units = []
        for stage, stride in enumerate(STRIDES):
            units.append(ResidualUnit(FILTERS[stage], FILTERS[stage + 1], stride, activate_before_residual=stage == 0))
            width = FILTERS[stage + 1]
            units += [ResidualUnit(width, width, 1, False) for _ in range(units_per_stage - 1)]
        self.units = nn.Sequential(*units)
        self.act_last = nn.LeakyReLU(LEAK)
        self.logit = nn.Linear(FILTERS[-1], num_classes)
        bound = math.sqrt(3.0 / FILTERS[-1])
        nn.init.uniform_(self.logit.weight, -bound, bound)
        nn.init.zeros_(self.logit.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.units(self.init_conv(self.standardize(x)))
        return self.logit(torch.mean(self.act_last(x), dim=(2, 3)))


@MODELS.register("rar_resnet", cam_layer="act_last")  # the last unit's activated output, before pooling
def rar_resnet(in_channels: int, image_size: tuple[int, int], num_classes: int, units_per_stage: int = 2,
               pixel_scale: float = 255.0) -> nn.Module:
    """The reference ResNet (2 units per stage for GTSRB, 1 for Flower-17); any image size (global pooling)."""
    return RarResNet(in_channels, num_classes, units_per_stage, pixel_scale)
