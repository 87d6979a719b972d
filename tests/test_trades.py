"""TRADES: its loss against the authors' definition written out on one batch, its inner maximisation, its settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS
from conftest import TinyNet

SETTINGS = {"name": "trades", "eps": 0.3, "steps": 5, "step_size": 0.05}


def authors_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, beta: float, eps: float, steps: int,
                 step_size: float) -> torch.Tensor:
    """The definition as the authors' trades.py spells it: a summed KLDivLoss, x + 0.001 N(0,1), torch.min/max
    projection, then CE + beta * KL / batch size with f(x) computed anew in each place."""
    criterion_kl = nn.KLDivLoss(reduction="sum")
    x_adv = x.detach() + 0.001 * torch.randn(x.shape)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)
    loss_natural = F.cross_entropy(model(x), y)
    loss_robust = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1)) / len(x)
    return loss_natural + beta * loss_robust


@pytest.mark.parametrize("beta", [1.0, 6.0])
def test_the_loss_and_its_gradient_equal_the_authors_definition(beta):
    model, x, y = TinyNet(), torch.rand(6, 1, 8, 8), torch.tensor([1, 2, 3, 4, 5, 6])
    torch.manual_seed(0)
    ours = REGULARIZERS.build({**SETTINGS, "beta": beta})(model, x, y).loss
    torch.manual_seed(0)
    theirs = authors_loss(model, x, y, beta, 0.3, 5, 0.05)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(torch.autograd.grad(ours, list(model.parameters())),
                    torch.autograd.grad(theirs, list(model.parameters())), strict=True):
        torch.testing.assert_close(a, b)
    assert ours.item() > F.cross_entropy(model(x), y).item()  # the KL term adds something after the ascent


def test_the_inner_maximisation_raises_the_kl_and_stays_in_the_ball():
    model, x = TinyNet(), torch.rand(6, 1, 8, 8)
    objective = REGULARIZERS.build(SETTINGS)
    torch.manual_seed(1)
    x_adv = objective.perturbed(model, x)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean = F.softmax(model(x), 1)
        noise = (x + 0.3 * torch.sign(torch.randn_like(x))).clamp(0, 1)
        kl = [F.kl_div(F.log_softmax(model(z), 1), clean, reduction="none").sum(1) for z in (x_adv, noise)]
    assert kl[0].mean() > kl[1].mean()


def test_beta_zero_is_natural_training_in_the_mean():
    model, x, y = TinyNet(), torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    out = REGULARIZERS.build({**SETTINGS, "beta": 0.0})(model, x, y)
    natural = REGULARIZERS.build({"name": "natural", "reduction": "mean"})(model, x, y)
    torch.testing.assert_close(out.loss, natural.loss)


@pytest.mark.parametrize("bad,key", [({"beta": -1.0}, "beta"), ({"start_sigma": float("inf")}, "start_sigma")])
def test_bad_settings_name_their_key(bad, key):
    with pytest.raises(AttrobustError, match=key):
        REGULARIZERS.build({**SETTINGS, **bad})
