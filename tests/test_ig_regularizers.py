"""IG-NORM, IG-SUM-NORM and the input-gradient penalty: limits, gradients, inner maximisation, the theorem."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attrobust.attacks.projected_ascent import LinfBall
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.ig_terms import ig_l1
from conftest import TinyNet

INNER = {"eps": 0.3, "steps": 3, "step_size": 0.1}
IG = {"ig_steps": 6, "approx_factor": 3}


def grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters()), allow_unused=False))


def test_zero_weight_ig_norm_is_natural_training():
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    ig_norm = REGULARIZERS.build({"name": "ig_norm", **INNER, **IG, "weight": 0.0})(model, x, y)
    natural = REGULARIZERS.build({"name": "natural"})(model, x, y)
    torch.testing.assert_close(ig_norm.loss, natural.loss)
    for a, b in zip(grads(model, ig_norm.loss), grads(model, natural.loss), strict=True):
        torch.testing.assert_close(a, b)


def test_zero_weight_ig_sum_norm_is_pgd_training():
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    torch.manual_seed(5)
    ig_sum = REGULARIZERS.build({"name": "ig_sum_norm", **INNER, **IG, "weight": 0.0})(model, x, y)
    torch.manual_seed(5)
    pgd = REGULARIZERS.build({"name": "pgd", **INNER})(model, x, y)
    torch.testing.assert_close(ig_sum.loss, pgd.loss)
    for a, b in zip(grads(model, ig_sum.loss), grads(model, pgd.loss), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["ig_norm", "ig_sum_norm"])
def test_recompute_gives_the_same_training_gradients(name):
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    results = []
    for recompute in (False, True):
        torch.manual_seed(3)
        objective = REGULARIZERS.build({"name": name, **INNER, **IG, "max_points": 8, "recompute": recompute})
        out = objective(model, x, y)
        results.append((out.loss, grads(model, out.loss)))
    (loss, plain), (loss_recomputed, recomputed) = results
    torch.testing.assert_close(loss_recomputed, loss)
    for a, b in zip(recomputed, plain, strict=True):
        torch.testing.assert_close(a, b)


def test_ig_term_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Softplus(), nn.Linear(4, 3)).double()
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64)
    x_adv = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    y = torch.tensor([0, 2])
    names = [name for name, _ in model.named_parameters()]

    def term(*params: torch.Tensor) -> torch.Tensor:
        weights = dict(zip(names, params, strict=True))
        fn = lambda z: functional_call(model, weights, (z,))  # noqa: E731
        wrapped = nn.Module()
        wrapped.forward = fn  # type: ignore[method-assign]
        return ig_l1(wrapped, x, x_adv, y, steps=5, create_graph=True).sum()

    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(term, params)


def test_inner_maximisation_increases_the_ig_norm():
    torch.manual_seed(0)
    model, x, y = TinyNet(), torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    reg = REGULARIZERS.build({"name": "ig_norm", **INNER, **IG, "steps": 10, "step_size": 0.05})
    start = LinfBall(x, reg.eps).sample()
    x_star = reg.inner_maximum(lambda z: ig_l1(model, x, z, y, 2, create_graph=True), x)
    before = ig_l1(model, x, start, y, 6, create_graph=False)
    after = ig_l1(model, x, x_star, y, 6, create_graph=False)
    assert after.mean() > 1.5 * before.mean()


def test_one_layer_theorem_ig_norm_and_ig_sum_norm_coincide():
    """The paper's theorem for a linear (one-layer) model: at the worst-case corner x* of the ball every IG coordinate
    has the sign of the total change, so ||IG(x, x*)||_1 = CE(x*) - CE(x). Then IG-NORM with lambda = 1 is CE(x*)
    (Madry's objective) and IG-SUM-NORM is (1 + beta) CE(x*) - beta CE(x): both are soft max-margin training, and x*
    maximises both inner problems (checked against PGD's own answer and random points of the ball)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    x = 0.35 + 0.3 * torch.rand(6, 1, 4, 4, dtype=torch.float64)  # the eps-ball stays inside [0, 1]
    y = torch.randint(0, 2, (6,))
    w = model[1].weight.detach()
    toward_other = torch.where(y.view(-1, 1) == 0, w[1] - w[0], w[0] - w[1]).view(-1, 1, 4, 4)
    corner = x + 0.3 * toward_other.sign()
    ce = lambda z: F.cross_entropy(model(z), y, reduction="none")  # noqa: E731
    norm = lambda z: ig_l1(model, x, z, y, 400, create_graph=False)  # noqa: E731
    torch.testing.assert_close(norm(corner), ce(corner) - ce(x), rtol=5e-3, atol=1e-6)

    beta = 0.5
    ig_norm_loss = ce(x) + 1.0 * norm(corner)
    ig_sum_loss = ce(corner) + beta * norm(corner)
    torch.testing.assert_close(ig_norm_loss, ce(corner), rtol=5e-3, atol=1e-6)
    torch.testing.assert_close(ig_sum_loss, (1 + beta) * ce(corner) - beta * ce(x), rtol=5e-3, atol=1e-6)

    settings = {**INNER, "steps": 20, "step_size": 0.05, "ig_steps": 20, "approx_factor": 1}
    ig_sum = REGULARIZERS.build({"name": "ig_sum_norm", **settings, "weight": beta})
    ig_norm = REGULARIZERS.build({"name": "ig_norm", **settings, "weight": 1.0})
    candidates = [LinfBall(x, 0.3).sample() for _ in range(20)]
    candidates.append(ig_norm.inner_maximum(lambda z: ig_l1(model, x, z, y, 20, create_graph=True), x))
    candidates.append(ig_sum.inner_maximum(lambda z: ig_sum.inner_objective(model, x, y, z), x))
    for z in candidates:
        assert (norm(z) <= norm(corner) + 1e-9).all()
        assert (ce(z) + beta * norm(z) <= ce(corner) + beta * norm(corner) + 1e-9).all()
    torch.testing.assert_close(candidates[-1], corner)  # IG-SUM-NORM's PGD finds the corner


def test_input_gradient_penalty_in_closed_form():
    """For logits W z the per-example input gradient of CE is W^T (softmax - onehot)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3, bias=False)).double()
    x, y = torch.rand(4, 1, 3, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    out = REGULARIZERS.build({"name": "input_grad", "weight": 2.0, "reduction": "sum"})(model, x, y)
    w = model[1].weight
    p = torch.softmax(model(x), 1) - F.one_hot(y, 3)
    penalty = 0.5 * (p @ w).pow(2).sum(1)
    expected = (F.cross_entropy(model(x), y, reduction="none") + 2.0 * penalty).sum()
    torch.testing.assert_close(out.loss, expected)
