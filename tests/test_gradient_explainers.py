"""Gradient-based explainers beyond IG against their oracles (float64, same model and inputs): GradientSHAP against
Captum's `GradientShap` on the same draws, DeepLIFT against Captum's `DeepLift`, LRP against zennit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap
from torch import nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.gradient_shap import expected_gradients
from tests.test_explainers import MODELS, images, madry_cnn, small_cnn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("stdev", [0.0, 0.1])
def test_gradient_shap_equals_captum_on_the_same_draws(make, size, stdev):
    model, x = make(), images(3, size)
    y, samples = torch.tensor([2, 0, 1]), 4
    references = images(5, size, seed=9)
    np.random.seed(11)
    torch.manual_seed(12)
    expected = GradientShap(model).attribute(x, baselines=references, n_samples=samples, stdevs=stdev, target=y)
    np.random.seed(11)  # Captum's draws, rows image-major: baseline indices, then path positions (numpy), noise
    chosen = np.random.choice(5, samples * 3).tolist()
    alphas = torch.tensor(np.random.uniform(0.0, 1.0, samples * 3), dtype=x.dtype)
    torch.manual_seed(12)
    noise = torch.normal(0, torch.tensor(stdev).repeat((3 * samples, *x.shape[1:]))).to(x.dtype)

    def sample_major(rows: torch.Tensor) -> torch.Tensor:
        return rows.view(3, samples, *rows.shape[1:]).transpose(0, 1)

    ours = expected_gradients(model, x, y, sample_major(alphas), sample_major(references[chosen]),
                              sample_major(noise), rows=5)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_gradient_shap_draws_are_seeded_shared_and_zeros_is_ig_at_random_points():
    explainer = EXPLAINERS.build({"name": "gradient_shap", "samples": 3, "baselines": "zeros", "stdev": 0.0})
    x = images(2, 12)
    alphas, baselines, noise = explainer.draws(x)
    assert alphas.shape == (3, 2) and torch.equal(alphas[:, 0], alphas[:, 1])
    assert baselines.abs().sum() == 0 and noise.abs().sum() == 0
    again = explainer.draws(x)[0]
    assert torch.equal(again, alphas)
    other = EXPLAINERS.build({"name": "gradient_shap", "samples": 3, "seed": 1}).draws(x)
    assert not torch.equal(other[0], alphas) and (other[1] >= 0).all() and (other[1] <= 1).all()


def one_kind_of_nonlinearity(pool: type[nn.Module], activation: type[nn.Module], seed: int = 0) -> nn.Module:
    """A CNN with activations and average pools, or max-pools and no activation: where Captum's hooks hold (with
    both, its attributions no longer add up to the logit's difference: captum issues #1104, #1276)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), activation(), pool(2), nn.Conv2d(3, 4, 3, padding=1),
                         activation(), pool(2), nn.Flatten(), nn.Linear(36, 8), activation(),
                         nn.Linear(8, 5)).double().eval()


@pytest.mark.parametrize("baseline", [0.0, 0.3])
def test_deeplift_equals_captum_and_sums_to_the_logit_difference(baseline):
    from captum.attr import DeepLift

    x, y = images(3, 12), torch.tensor([1, 4, 0])
    explainer = EXPLAINERS.build({"name": "deeplift", "baseline": baseline})
    for model in (one_kind_of_nonlinearity(nn.AvgPool2d, nn.ReLU), one_kind_of_nonlinearity(nn.MaxPool2d, nn.Identity),
                  one_kind_of_nonlinearity(nn.AvgPool2d, nn.Softplus)):
        expected = DeepLift(model).attribute(x, baselines=baseline, target=y)
        torch.testing.assert_close(explainer.explain(model, x, y), expected, atol=1e-10, rtol=0)
    for make, size in [(small_cnn, 12), (madry_cnn, 28)]:  # ReLUs and max-pools: the sum holds for ours
        model, x = make(), images(3, size)
        ours = explainer.explain(model, x, y)
        with torch.no_grad():
            logits, reference = model(x), model(torch.full_like(x, baseline))
        gap = (logits - reference).gather(1, y[:, None])[:, 0]
        torch.testing.assert_close(ours.flatten(1).sum(1), gap, atol=1e-10, rtol=0)


@pytest.mark.parametrize("make,size", MODELS)
@pytest.mark.parametrize("rule", ["epsilon_plus", "epsilon"])
def test_lrp_equals_zennit(make, size, rule):
    zennit_attribution = pytest.importorskip("zennit.attribution", reason="zennit (the LRP oracle) is not installed")
    from zennit.composites import EpsilonPlus, LayerMapComposite
    from zennit.rules import Epsilon, Pass
    from zennit.types import Activation, Convolution

    model, x = make(), images(3, size)
    y = torch.tensor([2, 0, 3])
    composite = EpsilonPlus() if rule == "epsilon_plus" else \
        LayerMapComposite([(Activation, Pass()), (Convolution, Epsilon()), (nn.Linear, Epsilon())])
    with zennit_attribution.Gradient(model, composite) as attributor:
        _, relevance = attributor(x, lambda out: out * torch.eye(out.shape[1], dtype=out.dtype)[y])
    std = model.normalize.std  # zennit's relevance passes the normalisation's gradient: / std
    ours = EXPLAINERS.build({"name": "lrp", "rule": rule}).explain(model, x, y)
    torch.testing.assert_close(ours, relevance * std, atol=1e-10, rtol=1e-8)


def test_lrp_reads_a_layer_s_own_forward_so_same_padding_convolutions_equal_zennit():
    """The RAR ResNet's convolutions pad themselves ('SAME', in forward): the z+ rule runs that forward too."""
    zennit_attribution = pytest.importorskip("zennit.attribution", reason="zennit (the LRP oracle) is not installed")
    from zennit.composites import EpsilonPlus

    from attrobust.models.rar_resnet import SameConv2d

    torch.manual_seed(0)
    model = nn.Sequential(SameConv2d(1, 4, 3, stride=2), nn.ReLU(), SameConv2d(4, 4, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)).double()
    x, y = images(3, 28), torch.tensor([2, 0, 3])
    with zennit_attribution.Gradient(model, EpsilonPlus()) as attributor:
        _, relevance = attributor(x, lambda out: out * torch.eye(10, dtype=out.dtype)[y])
    ours = EXPLAINERS.build({"name": "lrp"}).explain(model, x, y)
    torch.testing.assert_close(ours, relevance, atol=1e-10, rtol=1e-8)
