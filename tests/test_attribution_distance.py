"""The attribution-distance template: each distance, its weight-0 limits (natural and PGD training exactly), and a
step of each preset's form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.attribution_distance import DISTANCES
from conftest import TinyNet

INNER = {"eps": 0.3, "steps": 2, "step_size": 0.1}


def build(**settings):
    return REGULARIZERS.build({"name": "attribution_distance", **INNER, **settings})


def grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_each_distance_is_zero_for_identical_maps_and_grows_away_from_them(name):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(5, 12, generator=generator, dtype=torch.float64)
    away = torch.randn(5, 12, generator=generator, dtype=torch.float64)
    distance = DISTANCES[name]
    torch.testing.assert_close(distance(a, a.clone()), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    t = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(distance(a, a + t * away).sum(), t)
    assert slope > 0 and (distance(a, a + 0.1 * away) > 0).all()


def test_weight_zero_is_natural_training_exactly():
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    template = build(weight=0.0, inner="random")(model, x, y)
    natural = REGULARIZERS.build({"name": "natural"})(model, x, y)
    assert torch.equal(template.loss, natural.loss)
    assert all(torch.equal(a, b) for a, b in zip(grads(model, template.loss), grads(model, natural.loss), strict=True))


def test_weight_zero_on_the_perturbed_image_is_pgd_training_exactly():
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    torch.manual_seed(5)
    template = build(weight=0.0, ce_at="perturbed", inner_maximises="loss", surrogate_beta=None)(model, x, y)
    torch.manual_seed(5)
    pgd = REGULARIZERS.build({"name": "pgd", **INNER})(model, x, y)
    assert torch.equal(template.loss, pgd.loss)
    assert all(torch.equal(a, b) for a, b in zip(grads(model, template.loss), grads(model, pgd.loss), strict=True))


@pytest.mark.parametrize("settings", [
    {"distance": "pearson", "ce_at": "perturbed"},                                     # the AdvAAT form
    {"explainer": "ig", "explainer_steps": 3, "distance": "cosine"},                   # the IGR form
    {"distance": "squared_l2", "inner": "random", "detach_clean_map": True},           # an LGA-like form
    {"distance": "kl", "inner_maximises": "loss", "surrogate_beta": None}])
def test_a_step_of_each_form_trains_every_weight(settings):
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    out = build(weight=1.0, **settings)(model, x, y)
    assert torch.isfinite(out.loss) and float(out.terms["penalty"]) > 0
    assert all(g.abs().sum() > 0 for g in grads(model, out.loss))


def test_bad_settings_are_one_line():
    for settings, message in [({"distance": "l3"}, "distance must be one of cosine, pearson, l1, squared_l2, kl"),
                              ({"explainer": "saliency"}, "explainer must be one of"),
                              ({"explainer": "gradient", "explainer_steps": 3}, "the gradient explainer has no steps"),
                              ({"surrogate_beta": 0.0}, "surrogate_beta must be positive or null"),
                              ({"inner": "none"}, "inner must be one of pgd, random, got 'none'")]:
        with pytest.raises(AttrobustError, match=message):
            build(**settings)


def test_the_lga_form_equals_its_code_formula():
    """LGA (RobustAGA's l2 + cosd classifier): mean CE + l2 * mean ||g - g_r||^2 + cos * (1 - mean cos(g, g_r)) / 2,
    g the input gradient of the true logit (detached at x), g_r at x + uniform noise of radius eps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(2 * 36, 3)).double()
    x = 0.3 + 0.4 * torch.rand(4, 1, 6, 6, dtype=torch.float64)  # far from the pixel range's ends: nothing clipped
    y, eps, l2, cos = torch.tensor([0, 1, 2, 1]), 0.05, 1.5, 0.8
    lga = REGULARIZERS.build({"name": "attribution_distance", "eps": eps, "steps": 1, "step_size": 0.01,
                              "weight": l2, "distance": "squared_l2", "extra_distance": "cosine",
                              "extra_weight": cos / 2, "inner": "random", "detach_clean_map": True,
                              "reduction": "mean"})
    torch.manual_seed(7)
    ours = lga(model, x, y).loss

    def logit_gradient(z: torch.Tensor, create_graph: bool) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(model(z)[range(len(y)), y].sum(), z, create_graph=create_graph)[0]

    torch.manual_seed(7)
    z = eps * (2 * torch.rand(x.shape, dtype=torch.float64) - 1)
    g, g_r = logit_gradient(x, False).flatten(1), logit_gradient(x + z, True).flatten(1)
    cossim = torch.nn.functional.cosine_similarity(g, g_r, dim=1).mean()
    theirs = (torch.nn.functional.cross_entropy(model(x), y) + l2 * (g - g_r).norm(dim=1).square().mean()
              + cos * (1 - cossim) / 2)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads(model, ours), grads(model, theirs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_maps_at_a_small_offset_give_the_input_hessian_penalty():
    """With A = the input gradient and D = squared L2, D(A(x), A(x + z)) = ||H z||^2 + O(|z|^3), H the input Hessian of
    the true logit: as the radius shrinks the template becomes a Hessian (curvature) penalty, the second-order
    counterpart of the input-gradient penalty (whose closed form, a one-point IG-NORM, test_input_gradient checks).
    At x' = x exactly every distance is 0, which is why the template has no `inner: none`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(2 * 36, 3)).double()
    x, y, eps = 0.3 + 0.4 * torch.rand(4, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1]), 1e-5
    template = REGULARIZERS.build({"name": "attribution_distance", "eps": eps, "steps": 1, "step_size": eps,
                                   "distance": "squared_l2", "inner": "random", "reduction": "mean"})
    torch.manual_seed(7)
    penalty = template(model, x, y).terms["penalty"]
    torch.manual_seed(7)
    z = eps * (2 * torch.rand(x.shape, dtype=torch.float64) - 1)
    hessian_z = torch.stack([torch.autograd.functional.hvp(lambda v, i=i: model(v)[0, y[i]], x[i:i + 1], z[i:i + 1])[1]
                             for i in range(len(x))])
    torch.testing.assert_close(penalty, hessian_z.flatten(1).pow(2).sum(1).mean(), rtol=1e-3, atol=0)
