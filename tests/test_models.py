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


def test_madry_cnn_reference_init_is_tensorflows_truncated_normal_and_bias_point_one():
    """TensorFlow's truncated_normal(stddev=0.1) redraws outside 2 std: std 0.1 * 0.8796 = 0.0880 after truncation."""
    truncated_std = 0.1 * math.sqrt(1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))
    assert abs(truncated_std - 0.088) < 5e-4
    net = build("madry_cnn", channels=1, size=28, classes=10, init="reference")
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4
    for layer in layers:
        assert torch.equal(layer.bias, torch.full_like(layer.bias, 0.1))
        assert layer.weight.abs().max() <= 0.2
    fc1 = layers[2].weight  # 3,211,264 draws: the sample std is within 1e-4 of the truncated std
    assert fc1.shape == (1024, 7 * 7 * 64)
    assert abs(fc1.std().item() - truncated_std) < 1e-3 and abs(fc1.mean().item()) < 1e-3
    assert fc1.abs().max() > 0.199  # cut at 2 std, not narrower
    default = build("madry_cnn", channels=1, size=28, classes=10)
    assert abs(default.classifier[1].weight.std().item() - 1 / math.sqrt(3 * 7 * 7 * 64)) < 1e-3  # about 0.010
    small = build("small_cnn", channels=1, size=28, classes=10, init="reference")
    assert all(torch.equal(m.bias, torch.full_like(m.bias, 0.1)) for m in small.modules() if isinstance(m, nn.Linear))


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


def declared_model(name: str) -> nn.Module:
    """`name` built as the commands build it (normalisation and declared traits), for 3-channel 32 x 32 images."""
    from attrobust.models import build_model

    if MODELS.declared(name).get("lipschitz"):
        pytest.importorskip("deel.torchlip")
    spec = type("Spec", (), {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})()
    torch.manual_seed(0)
    return build_model({"name": name}, spec, (3, 32, 32), 5).eval()


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name):
    """Every registered model: logits of the right shape, its declared layer resolvable, the smooth surrogate swaps
    its activations (or it refuses in one line), and where it does, second-order gradients reach every weight."""
    from attrobust.attributions.surrogate import NotSmoothable, check_smoothable
    from attrobust.models import traits_of

    model = declared_model(name)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    traits = traits_of(model)
    if traits.cam_layer is not None:
        assert isinstance(model.get_submodule(traits.cam_layer), nn.Module)
    assert (traits.lipschitz_constant is not None) == bool(MODELS.declared(name).get("lipschitz"))
    try:
        check_smoothable(model, f"model {name}")
    except NotSmoothable:  # declared refusal: a one-line reason, and the attacks estimate their direction instead
        return
    with softplus_surrogate(model.train()):  # the weights as training sees them (deel-torchlip fixes them in eval)
        (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x, create_graph=True)
        weights = [p for p in model.parameters() if p.dim() > 1]
        second = torch.autograd.grad(grad.square().sum(), weights, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in second)
