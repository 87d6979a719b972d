"""The input-gradient penalty in both conventions against closed forms on a linear model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).double()


def closed_form_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_{x_i} CE_i = W^T (softmax(W x_i + b) - onehot(y_i)) for a linear model, one row per example."""
    layer = model[1]
    probabilities = torch.softmax(x.flatten(1) @ layer.weight.T + layer.bias, dim=1)
    return ((probabilities - F.one_hot(y, 4).double()) @ layer.weight).view_as(x)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_both_conventions_against_the_closed_form_on_a_linear_model(reduction):
    model = linear_model()
    batch = 5
    x = torch.rand(batch, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 1])
    ce = F.cross_entropy(model(x), y, reduction="none").detach()
    g = closed_form_gradients(model, x, y)
    scale = batch if reduction == "sum" else 1
    weight = 7.0

    per_example = REGULARIZERS.build({"name": "input_grad", "weight": weight, "reduction": reduction})
    expected = ce.mean() + weight * (0.5 * g.pow(2).flatten(1).sum(1)).mean()
    torch.testing.assert_close(per_example(model, x, y).loss, scale * expected, rtol=1e-12, atol=0)

    # Ross & Doshi-Velez: one gradient of the batch-mean loss with respect to the whole batch, tf.nn.l2_loss of it
    batch_x = x.clone().requires_grad_(True)
    (of_mean,) = torch.autograd.grad(F.cross_entropy(model(batch_x), y, reduction="mean"), batch_x)
    torch.testing.assert_close(of_mean, g / batch, rtol=1e-12, atol=1e-15)
    mean_loss = REGULARIZERS.build({"name": "input_grad", "weight": weight, "reduction": reduction,
                                    "gradient_of": "mean_loss"})
    expected = ce.mean() + weight * 0.5 * (g / batch).pow(2).sum()
    out = mean_loss(model, x, y)
    torch.testing.assert_close(out.loss, scale * expected, rtol=1e-12, atol=0)
    assert mean_loss.couples_the_batch and not per_example.couples_the_batch

    # a per-example weight w is a mean-loss weight of w * B
    scaled = REGULARIZERS.build({"name": "input_grad", "weight": weight * batch, "reduction": reduction,
                                 "gradient_of": "mean_loss"})
    torch.testing.assert_close(scaled(model, x, y).loss, per_example(model, x, y).loss, rtol=1e-12, atol=0)

    # the penalty reaches the weights (double backprop): its weight gradient is that of the closed form
    out.loss.backward()
    layer = model[1]
    reference = linear_model()
    reference[1].load_state_dict(layer.state_dict())
    w, b = reference[1].weight.detach().requires_grad_(True), reference[1].bias.detach().requires_grad_(True)
    p = torch.softmax(x.flatten(1) @ w.T + b, dim=1)
    closed = (p - F.one_hot(y, 4).double()) @ w
    loss = F.cross_entropy(x.flatten(1) @ w.T + b, y) + weight * 0.5 * (closed / batch).pow(2).sum()
    (scale * loss).backward()
    torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(layer.bias.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_unknown_convention_is_one_clear_error():
    with pytest.raises(AttrobustError, match="reg.gradient_of must be one of per_example, mean_loss, got 'batch'"):
        REGULARIZERS.build({"name": "input_grad", "gradient_of": "batch"})
