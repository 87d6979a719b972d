"""The reference ResNet (shapes, parameter count, TensorFlow 'SAME' padding, per-image standardisation, surrogate
swap) and torchvision's ResNet-18 with second-order gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.attributions.surrogate import LeakySoftplus, softplus_surrogate
from attrobust.models import MODELS
from attrobust.models.rar_resnet import PerImageStandardization, SameConv2d


def build(name: str, channels: int = 3, size: int = 32, classes: int = 43, **fields) -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build({"name": name, **fields}, in_channels=channels, image_size=(size, size), num_classes=classes)


def test_reference_resnet_parameter_counts():
    # By hand from the reference's variables (3x3 kernels, no conv biases, fc with bias):
    # init 3*16; stage 1: 2 units x 2 convs 16->16; stage 2: 16->32, 32->32, then 2 x 32->32; stage 3 likewise at 64.
    conv = 9 * (3 * 16 + 4 * 16 * 16 + 16 * 32 + 3 * 32 * 32 + 32 * 64 + 3 * 64 * 64)
    assert sum(p.numel() for p in build("rar_resnet").parameters()) == conv + 64 * 43 + 43
    flower = 9 * (3 * 16 + 2 * 16 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64) + 64 * 17 + 17
    assert sum(p.numel() for p in build("rar_resnet_flower", size=128, classes=17).parameters()) == flower
    assert build("rar_resnet_flower", size=128, classes=17)(torch.rand(2, 3, 128, 128)).shape == (2, 17)


def test_same_padding_is_tensorflows_for_stride_two():
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.rand(1, 1, 8, 8)
    # TensorFlow 'SAME' with stride 2 on an even size pads one row/column after and none before
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert conv(x).shape == (1, 1, 4, 4) and torch.allclose(conv(x), expected)
    one = SameConv2d(1, 1, 3, stride=1)
    assert torch.allclose(one(x), F.conv2d(x, one.weight, padding=1))


def test_per_image_standardisation_matches_tensorflows_definition():
    x = torch.rand(3, 3, 8, 8)
    v = 255 * x
    mean = v.mean(dim=(1, 2, 3), keepdim=True)
    std = v.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1 / math.sqrt(3 * 64))
    assert torch.allclose(PerImageStandardization(255.0)(x), (v - mean) / std, atol=1e-4)
    flat = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)
    out = PerImageStandardization(255.0)(flat)
    assert torch.all(out == 0)
    out.sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_surrogate_swaps_every_leaky_relu_and_restores_them():
    model = build("rar_resnet")
    x = torch.rand(2, 3, 32, 32)
    before = model(x)
    leaky = sum(isinstance(m, nn.LeakyReLU) for m in model.modules())
    assert leaky == 2 * 6 + 1
    with softplus_surrogate(model) as smooth:
        assert not any(isinstance(m, nn.LeakyReLU) for m in smooth.modules())
        assert sum(isinstance(m, LeakySoftplus) and m.negative_slope == 0.1 for m in smooth.modules()) == leaky
        assert not torch.allclose(smooth(x), before)
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("name", ["rar_resnet", "resnet18"])
def test_second_order_gradients_flow(name):
    model = build(name, size=32, classes=5).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    with softplus_surrogate(model):
        (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x, create_graph=True)
        (second,) = torch.autograd.grad(grad.abs().sum(), x)
    assert torch.isfinite(second).all() and second.abs().sum() > 0
