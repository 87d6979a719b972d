"""R2ET against a direct computation of its reference code: the anchored pair margins, the adaptive weights, the
finite-difference curvature against a Hessian-vector product, and weight 0 (natural training)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.r2et import curvature, loss_gradient, ranking_gap


def smooth_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(3 * 36, 4)).double()


def test_the_ranking_gap_is_the_sum_of_the_reference_anchored_pair_margins():
    """The reference's `tx` pairs, 0-based ranks: (r, k-1) for r < k-1 and (k-1, k+j) for j < k; each pair (i, j)
    contributes s at rank j minus s at rank i."""
    saliency = torch.rand(3, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    k = 6
    pairs = [(r, k - 1) for r in range(k - 1)] + [(k - 1, k + j) for j in range(k)]
    ranked = saliency.sort(dim=1, descending=True).values
    expected = sum(ranked[:, j] - ranked[:, i] for i, j in pairs)
    torch.testing.assert_close(ranking_gap(saliency, k), expected, rtol=1e-12, atol=1e-14)


def test_the_loss_is_ce_plus_adaptively_weighted_terms_as_the_reference():
    model, x, y = smooth_net(), torch.rand(5, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1])
    r2et = REGULARIZERS.build({"name": "r2et", "k": 5, "weight": 0.3})
    ours = r2et(model, x, y).loss
    ce, grad = loss_gradient(model, x, y)
    ranking = ranking_gap(grad.abs().sum(1).flatten(1), 5).sum()
    hessian = curvature(model, x, y, grad, 1e-3)
    scale = 0.3 * (ce.mean().detach() + 1)
    theirs = ce.mean() + (scale / ranking.detach()).abs() * ranking + (scale / hessian.detach()).abs() * hessian
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    # each adaptively weighted term's value is +-lambda (CE + 1): the ranking gap is negative, the norm positive
    torch.testing.assert_close(ours, ce.mean(), rtol=1e-12, atol=1e-14)
    for a, b in zip(torch.autograd.grad(ours, list(model.parameters())),
                    torch.autograd.grad(theirs, list(model.parameters())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_without_adaptive_weights_each_term_is_weighted_by_lambda():
    model, x, y = smooth_net(), torch.rand(5, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1])
    ours = REGULARIZERS.build({"name": "r2et", "k": 5, "weight": 0.3, "curvature_weight": 2.0,
                               "adaptive": False})(model, x, y).loss
    ce, grad = loss_gradient(model, x, y)
    ranking = ranking_gap(grad.abs().sum(1).flatten(1), 5).sum()
    theirs = ce.mean() + 0.3 * ranking + 0.6 * curvature(model, x, y, grad, 1e-3)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_the_curvature_estimate_tends_to_the_hessian_vector_product():
    """(g(x + h v) - g(x)) / h -> H v as h -> 0, with v = sign(g) / D and H the Hessian of the batch-mean CE."""
    model, x, y = smooth_net(), torch.rand(3, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2])
    _, grad = loss_gradient(model, x, y)
    v = grad.detach().sign() / grad[0].numel()
    _, hv = torch.autograd.functional.hvp(lambda z: F.cross_entropy(model(z), y), x, v)
    torch.testing.assert_close(curvature(model, x, y, grad, 1e-6), hv.norm(), rtol=1e-4, atol=0)


def test_weight_zero_is_natural_training_exactly():
    model, x, y = smooth_net(), torch.rand(4, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    r2et = REGULARIZERS.build({"name": "r2et", "weight": 0.0, "k": 5})(model, x, y)
    natural = REGULARIZERS.build({"name": "natural", "reduction": "mean"})(model, x, y)
    assert torch.equal(r2et.loss, natural.loss) and torch.equal(r2et.logits, natural.logits)
    for a, b in zip(torch.autograd.grad(r2et.loss, list(model.parameters())),
                    torch.autograd.grad(natural.loss, list(model.parameters())), strict=True):
        assert torch.equal(a, b)


def test_the_softplus_copy_trains_but_the_network_itself_gives_the_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).double()
    x, y = torch.rand(4, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    out = REGULARIZERS.build({"name": "r2et", "k": 5, "surrogate_beta": 0.5})(model, x, y)
    assert torch.equal(out.logits, model(x)) and isinstance(model[1], nn.ReLU)
    assert not torch.allclose(out.terms["ce"], F.cross_entropy(model(x), y))  # the CE was the softplus copy's


def test_bad_settings_are_one_line():
    for settings, message in [({"k": 0}, "k must be >= 1"), ({"curvature_weight": -1.0}, "curvature_weight must be"),
                              ({"finite_difference_step": 0.0}, "finite_difference_step must be positive"),
                              ({"surrogate_beta": 0.0}, "surrogate_beta must be positive or null")]:
        with pytest.raises(AttrobustError, match=message):
            REGULARIZERS.build({"name": "r2et", **settings})
    with pytest.raises(ValueError, match="k must be at most half the 36 pixels"):
        REGULARIZERS.build({"name": "r2et", "k": 19})(smooth_net(), torch.rand(2, 1, 6, 6, dtype=torch.float64),
                                                      torch.tensor([0, 1]))
