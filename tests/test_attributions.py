"""Integrated Gradients and saliency: closed forms, completeness, Captum as an oracle, second-order gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attrobust.attributions import (
    RULES,
    input_gradient,
    integrated_gradients,
    logit_of,
    path_points,
    saliency_map,
    softplus_surrogate,
)
from attrobust.data import DATASETS
from attrobust.models.madry_cnn import MadryCNN
from conftest import DATASET_FIELDS, TinyNet


@pytest.mark.parametrize("rule", RULES)
def test_weights_sum_to_one(rule):
    alphas, weights = path_points(10, rule)
    assert abs(sum(weights) - 1) < 1e-12 and all(0 <= a <= 1 for a in alphas)


def test_ig_of_a_linear_function_is_exact():
    torch.manual_seed(0)
    w = torch.randn(1, 2, 3, 3)
    x, b = torch.rand(4, 2, 3, 3), torch.rand(4, 2, 3, 3)
    ig = integrated_gradients(lambda z: (z * w).flatten(1).sum(1), x, b, steps=3)
    torch.testing.assert_close(ig, (x - b) * w)


@pytest.mark.parametrize("rule,expected", [("riemann_right", lambda m: (m + 1) / (2 * m)),
                                           ("riemann_left", lambda m: (m - 1) / (2 * m)),
                                           ("riemann_middle", lambda m: 0.5),
                                           ("riemann_trapezoid", lambda m: 0.5),
                                           ("gausslegendre", lambda m: 0.5)])
def test_ig_of_a_quadratic_in_closed_form(rule, expected):
    """f(z) = sum z^2 from 0: grad at a*x is 2 a x, so IG = 2 x^2 * sum_k w_k a_k (exactly 1/2 in the limit)."""
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    m = 8
    ig = integrated_gradients(lambda z: (z ** 2).flatten(1).sum(1), x, steps=m, rule=rule)
    torch.testing.assert_close(ig, 2 * x ** 2 * expected(m))


def test_completeness_on_a_small_cnn():
    """sum_i IG_i = f(x) - f(0) up to quadrature error: a ReLU CNN on real digits, within 1% at 400 steps."""
    torch.manual_seed(0)
    net = MadryCNN(1, (28, 28), 10, (16, 32), 256).double()
    data = DATASETS.build({"name": "mnist_mini", **DATASET_FIELDS}).load().test
    x, y = data.batch(slice(0, 1000, 100), torch.device("cpu"))
    fn = logit_of(net, y)
    gap = fn(x.double()) - fn(torch.zeros_like(x.double()))
    errors = [((integrated_gradients(fn, x.double(), steps=m).flatten(1).sum(1) - gap).abs() / gap.abs()).max()
              for m in (100, 400)]
    assert errors[1] < 0.01 and errors[1] < errors[0]


def test_chunked_path_points_give_the_same_result(tiny_net):
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3])
    full = integrated_gradients(logit_of(tiny_net, y), x, steps=20)
    torch.testing.assert_close(integrated_gradients(logit_of(tiny_net, y), x, steps=20, max_points=7), full)


def test_batched_ig_equals_one_image_at_a_time(tiny_net):
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 3, 5, 9])
    batched = integrated_gradients(logit_of(tiny_net, y), x, steps=10)
    single = torch.cat([integrated_gradients(logit_of(tiny_net, y[i:i + 1]), x[i:i + 1], steps=10) for i in range(4)])
    torch.testing.assert_close(batched, single)


def test_agrees_with_captum_riemann_right(tiny_net):
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 3, 5, 9])
    ours = integrated_gradients(logit_of(tiny_net, y), x, steps=50)
    theirs = captum.IntegratedGradients(tiny_net).attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=50,
                                                            method="riemann_right")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gauss_legendre_equals_captums_and_is_exact_where_riemann_is_not(tiny_net):
    """Exact for a polynomial path integrand of degree <= 2m - 1 (here f = sum z^4: the integrand 4 a^3 x^4, degree
    3, exact from m = 2), where the right Riemann rule is off by O(1/m); the same alphas and weights as Captum's."""
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    quartic = lambda z: (z ** 4).flatten(1).sum(1)  # noqa: E731
    for m in (2, 5):
        torch.testing.assert_close(integrated_gradients(quartic, x, steps=m, rule="gausslegendre"), x ** 4)
    assert (integrated_gradients(quartic, x, steps=5) - x ** 4).abs().max() > 1e-2
    captum = pytest.importorskip("captum.attr")
    y = torch.tensor([1, 7])
    xs = torch.rand(2, 1, 8, 8)
    ours = integrated_gradients(logit_of(tiny_net, y), xs, steps=16, rule="gausslegendre")
    theirs = captum.IntegratedGradients(tiny_net).attribute(xs, baselines=torch.zeros_like(xs), target=y, n_steps=16,
                                                            method="gausslegendre")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    trapezoid = integrated_gradients(logit_of(tiny_net, y), xs, steps=16, rule="riemann_trapezoid")
    captums = captum.IntegratedGradients(tiny_net).attribute(xs, baselines=torch.zeros_like(xs), target=y,
                                                             n_steps=16, method="riemann_trapezoid")
    torch.testing.assert_close(captums, trapezoid * 15 / 16, atol=1e-5, rtol=1e-5)  # its weights sum to 15/16


def test_create_graph_lets_gradients_flow_to_input_and_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 3))
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    y = torch.tensor([0, 2])
    ig = integrated_gradients(logit_of(net, y), x, steps=5, create_graph=True)
    ig.abs().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    *weights, last_bias = net.parameters()  # a logit's input gradient does not depend on the last bias
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_recomputed_chunks_give_the_same_second_order_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 3)).double()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1])

    def gradients(**chunking: object) -> list[torch.Tensor]:
        ig = integrated_gradients(logit_of(net, y), x, steps=10, create_graph=True, **chunking)
        *weights, _ = net.parameters()  # a logit's input gradient does not depend on the last bias
        return list(torch.autograd.grad(ig.abs().sum(), [x, *weights]))

    plain = gradients()
    for ours, expected in zip(gradients(max_points=7, recompute=True), plain, strict=True):
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in plain)


def test_ig_gradient_matches_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.Softplus(), nn.Linear(4, 2)).double()
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    torch.autograd.gradcheck(lambda z: integrated_gradients(logit_of(net, y), z, steps=4, create_graph=True), (x,))


def test_saliency_map_normalises_to_the_number_of_pixels():
    a = torch.randn(3, 3, 5, 4)
    s = saliency_map(a)
    assert s.shape == (3, 20) and (s >= 0).all()
    torch.testing.assert_close(s.sum(1), torch.full((3,), 20.0))
    torch.testing.assert_close(s[0], (a[0].abs().sum(0) / a[0].abs().sum() * 20).flatten())
    assert torch.equal(saliency_map(torch.zeros(1, 1, 2, 2)), torch.zeros(1, 4))


def test_input_gradient_of_a_linear_function():
    w = torch.randn(1, 1, 3, 3)
    x = torch.rand(2, 1, 3, 3)
    torch.testing.assert_close(input_gradient(lambda z: (z * w).flatten(1).sum(1), x), w.expand(2, 1, 3, 3))


def test_softplus_surrogate_swaps_and_restores_on_the_same_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.LeakyReLU(0.1), nn.Linear(4, 2))
    x = torch.randn(3, 4)
    relu_out = net(x)
    with softplus_surrogate(net) as smooth:
        assert isinstance(smooth[1], nn.Softplus)
        h = nn.functional.softplus(net[0](x))
        h = 0.1 * net[2](h) + 0.9 * nn.functional.softplus(net[2](h))
        torch.testing.assert_close(smooth(x), net[4](h))
    assert isinstance(net[1], nn.ReLU) and isinstance(net[3], nn.LeakyReLU)
    torch.testing.assert_close(net(x), relu_out)


def test_tiny_net_relu_modules_are_swappable(tiny_net):
    with softplus_surrogate(tiny_net):
        assert not any(isinstance(m, nn.ReLU) for m in tiny_net.modules())
    assert any(isinstance(m, nn.ReLU) for m in tiny_net.modules())
    assert isinstance(TinyNet().body[1], nn.ReLU)
