"""Explainers: Captum as the oracle (float64, a small CNN and the Madry CNN), batched equals one image at a time,
second-order use (gradcheck, gradients reaching the weights), and contract tests generated from the registry."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import FAMILIES, NotDifferentiable
from attrobust.explainers.smoothgrad import smooth
from attrobust.models.madry_cnn import MadryCNN
from attrobust.models import MODELS
from attrobust.models.vit import ViT, vit
from attrobust.models.normalize import ModelTraits, NormalizedModel

FAST = {"ig": {"steps": 8}, "smoothgrad": {"samples": 4},  # settings that keep the contract tests quick
        "rise": {"masks": 50}, "lime": {"samples": 40}, "kernel_shap": {"samples": 40}}
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


MADRY_TRAITS = ModelTraits(cam_layer="net." + MODELS.declared("madry_cnn")["cam_layer"])  # as build_model declares


def small_cnn(seed: int = 0, activation: type[nn.Module] = nn.ReLU, size: int = 12) -> nn.Module:
    torch.manual_seed(seed)
    net = MadryCNN(1, (size, size), 5, conv_channels=(3, 4), hidden_units=8)
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, activation())
    return NormalizedModel(net, [0.5], [0.25], MADRY_TRAITS).double().eval()


def madry_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return NormalizedModel(MadryCNN(1, (28, 28), 10), [0.0], [1.0], MADRY_TRAITS).double().eval()


def tiny_vit(seed: int = 0, size: int = 12) -> nn.Module:
    """A two-block ViT on 4 x 4 patches (float64), for the explainers that read attention."""
    torch.manual_seed(seed)
    net = vit(1, (size, size), 5, patch=4, dim=8, depth=2, heads=2, mlp=16)
    return NormalizedModel(net, [0.5], [0.25], ModelTraits(cam_layer="net.grid")).double().eval()


def model_for(exp, model: nn.Module, size: int = 12) -> nn.Module:
    """`model`, or a tiny ViT for an explainer that refuses it (the attention explainers)."""
    try:
        exp.check_model(model)
    except AttrobustError:
        return tiny_vit(size=size)
    return model


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


MODELS = [pytest.param(small_cnn, 12, id="small_cnn"), pytest.param(madry_cnn, 28, id="madry_cnn")]


def explainer(name: str, **settings):
    return EXPLAINERS.build({"name": name, **FAST.get(name, {}), **settings})


@pytest.mark.parametrize("make,size", MODELS)
def test_gradient_and_grad_x_input_equal_captum(make, size):
    model, x = make(), images(3, size)
    y = torch.tensor([0, 1, 2])
    ours = explainer("gradient").explain(model, x, y)
    torch.testing.assert_close(ours, Saliency(model).attribute(x, target=y, abs=False), atol=1e-6, rtol=0)
    ours = explainer("grad_x_input").explain(model, x, y)
    torch.testing.assert_close(ours, InputXGradient(model).attribute(x, target=y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("make,size", MODELS)
def test_ig_equals_captum_riemann_right(make, size):
    model, x = make(), images(2, size)
    y = torch.tensor([3, 4])
    ours = explainer("ig", steps=16).explain(model, x, y)
    expected = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=16,
                                                    method="riemann_right")
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("wrapped", ["gradient", "grad_x_input"])
def test_smoothgrad_equals_captum_noise_tunnel_on_the_same_draws(make, size, wrapped):
    model, x = make(), images(3, size)
    y = torch.tensor([1, 0, 2])
    samples, stdev = 5, 0.2
    torch.manual_seed(7)
    captum_method = {"gradient": Saliency, "grad_x_input": InputXGradient}[wrapped](model)
    extra = {"abs": False} if wrapped == "gradient" else {}
    expected = NoiseTunnel(captum_method).attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev,
                                                    target=y, **extra)
    torch.manual_seed(7)  # Captum's draw (captum/attr/_core/noise_tunnel.py), image-major rows
    noise = torch.normal(0, torch.tensor(stdev, device=x.device).repeat((x.shape[0] * samples, *x.shape[1:])))
    noise = noise.view(x.shape[0], samples, *x.shape[1:]).transpose(0, 1)
    inner = EXPLAINERS.build({"name": wrapped})
    ours = smooth(lambda z, t: inner.explain(model, z, t), x, y, noise, samples_per_pass=2)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_smoothgrad_noise_is_seeded_scaled_to_each_image_and_shared_by_the_batch():
    sg = explainer("smoothgrad", noise_level=0.1)
    x = images(2, 12)
    x[1] = 0.5 * x[0]  # half the range: half the noise
    noise = sg.noise(x)
    assert noise.shape == (4, 2, 1, 12, 12)
    ratio = noise[:, 0] / noise[:, 1]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0))
    torch.testing.assert_close(sg.noise(x), noise)
    assert not torch.equal(explainer("smoothgrad", noise_level=0.1, seed=1).noise(x), noise)


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("relu,mode", [(True, "bilinear"), (False, "nearest")])
def test_gradcam_equals_captum_layer_gradcam_and_interpolate(make, size, relu, mode):
    model, x = make(), images(3, size)
    y = torch.tensor([2, 0, 1])
    ours = explainer("gradcam", relu=relu, interpolation=mode).explain(model, x, y)
    layer = model.get_submodule(model.traits.cam_layer)
    cam = LayerGradCam(model, layer).attribute(x, target=y, relu_attributions=relu)
    expected = LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode=mode)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_gradcam_names_a_bad_layer_with_the_choices():
    model = small_cnn()
    with pytest.raises(AttrobustError, match=r"explainer.layer=net.nope is not a module .* choose one of: "):
        explainer("gradcam", layer="net.nope").check_model(model)
    bare = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(AttrobustError, match=r"names no layer to read; set explainer.layer=MODULE_PATH \(one of: 0\)"):
        explainer("gradcam").check_model(bare)


# ---- contract tests, generated from the registry: a new explainer is tested the moment it is registered ----

@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer_contract_shape_and_batched_equals_one_image_at_a_time(name):
    exp = explainer(name)
    model, x = model_for(exp, small_cnn()), images(4, 12)
    y = torch.tensor([0, 1, 2, 3])
    exp.check_model(model)
    batched = exp.explain(model, x, y)
    assert batched.shape[0] == 4 and batched.shape[-2:] == x.shape[-2:] and batched.shape[1] in (1, x.shape[1])
    assert batched.dtype == x.dtype and torch.isfinite(batched).all() and not batched.requires_grad
    assert exp.passes_per_image >= 1 and exp.describe().startswith(name)
    singles = torch.cat([exp.explain(model, x[i:i + 1], y[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, singles, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer_contract_second_order_reaches_input_and_weights(name):
    """With create_graph the map is differentiable: gradcheck against finite differences on a smooth network, and a
    loss on the map gives every weight a gradient (what attacks and attribution-robust training need)."""
    exp = explainer(name)
    model, x = model_for(exp, small_cnn(activation=nn.Softplus, size=8), size=8), images(1, 8)
    y = torch.tensor([3])
    x.requires_grad_(True)
    if not exp.differentiable:  # forward passes only: refused in one line, and attacks estimate the direction
        with pytest.raises(NotDifferentiable, match=f"explainer {name} is not differentiable"):
            exp.explain(model, x, y, create_graph=True)
        return
    assert torch.autograd.gradcheck(lambda z: exp.explain(model, z, y, create_graph=True), (x,), eps=1e-6,
                                    atol=1e-5, fast_mode=True)
    loss = (exp.explain(model, x, y, create_graph=True) ** 2).sum()
    weights = list(model.parameters())[:-1]  # the last bias does not change any input gradient
    if isinstance(model.net, ViT):  # attention maps: the weights up to the last attention (no MLP, norm or head after)
        weights = [model.net.embed.weight, model.net.position, *model.net.blocks[0].parameters()]
    grads = torch.autograd.grad(loss, [x, *weights])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer_settings_of_the_wrong_type_are_one_clear_error(name):
    with pytest.raises(AttrobustError, match=f"unknown key\\(s\\) nope for explainer '{name}'"):
        EXPLAINERS.build({"name": name, "nope": 1})


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer_contract_declares_its_family(name):
    assert explainer(name).family in FAMILIES  # what the study report groups its findings by


def test_smoothgrad_wraps_any_explainer_and_refuses_itself():
    sg = explainer("smoothgrad", wraps={"name": "ig", "steps": 3})
    assert sg.passes_per_image == 4 * 3 and sg.describe() == "smoothgrad(ig(3), 4x0.15)"
    assert sg.differentiable and not explainer("smoothgrad", wraps="occlusion").differentiable  # as what it wraps
    assert (sg.family, explainer("smoothgrad", wraps="rise").family) == ("gradient", "perturbation")
    with pytest.raises(AttrobustError, match="wraps must name another explainer than smoothgrad"):
        explainer("smoothgrad", wraps={"name": "smoothgrad"})
    with pytest.raises(AttrobustError, match="unknown explainer 'igg'"):
        explainer("smoothgrad", wraps={"name": "igg"})
    assert explainer("smoothgrad", wraps="ig").describe() == explainer("smoothgrad", wraps={"name": "ig"}).describe()
    with pytest.raises(AttrobustError, match="wraps must be an explainer's name or settings"):
        explainer("smoothgrad", wraps=3)
