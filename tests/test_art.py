"""ART against a direct computation of its reference code's loss: the gradients, the hard-mined triplet over the
clean/adversarial pair, the alignment attack's ball, and weight 0 (cross-entropy at the attack's point)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.attributions import softplus_surrogate
from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.art import alignment_loss, cosine, true_and_strongest_other_gradients

SETTINGS = {"name": "art", "eps": 0.1, "steps": 2, "step_size": 0.05, "relative_step": None, "k": 10,
            "surrogate_beta": 5.0}


def smooth_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).double()


def test_the_gradients_are_each_examples_true_and_strongest_other_logit_gradients():
    model, x = smooth_net(), torch.rand(5, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1])
    z = x.clone().requires_grad_(True)
    g_true, g_other = true_and_strongest_other_gradients(model, z, y, create_graph=False)
    for i in range(len(x)):
        zi = x[i:i + 1].clone().requires_grad_(True)
        logits = model(zi)[0]
        other = max((c for c in range(4) if c != y[i]), key=lambda c: float(logits[c].detach()))
        (gi_true,) = torch.autograd.grad(logits[y[i]], zi, retain_graph=True)
        (gi_other,) = torch.autograd.grad(logits[other], zi)
        torch.testing.assert_close(g_true[i], gi_true.flatten(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g_other[i], gi_other.flatten(), rtol=1e-12, atol=1e-14)


def test_alignment_loss_equals_the_reference_hard_mined_soft_margin_triplet():
    """The reference builds 2B x 2B cosine-distance matrices between images and gradients and mines, over the
    entries of the same example (its clean and adversarial copies), the largest positive and smallest negative."""
    generator = torch.Generator().manual_seed(3)
    batch, dim = 4, 12
    images, g_true, g_other = (torch.randn(2 * batch, dim, generator=generator, dtype=torch.float64)
                               for _ in range(3))
    pair = torch.arange(batch).repeat(2)

    def distances(gradients: torch.Tensor) -> torch.Tensor:
        norms = (images.norm(dim=1, keepdim=True) + 1e-8) * (gradients.norm(dim=1, keepdim=True) + 1e-8).T
        return 1 - images @ gradients.T / norms

    same = pair[:, None] == pair[None, :]
    d_ap = distances(g_true).masked_fill(~same, float("-inf")).max(1).values
    d_an = distances(g_other).masked_fill(~same, float("inf")).min(1).values
    expected = torch.log1p(torch.exp(d_ap - d_an))  # SoftMarginLoss(d_an - d_ap, +1) per row
    torch.testing.assert_close(alignment_loss(images, g_true, g_other), expected, rtol=1e-12, atol=1e-14)


def test_the_loss_is_ce_at_the_attack_point_plus_the_mean_triplet_of_both_copies():
    model, x = smooth_net(), 0.2 + 0.6 * torch.rand(3, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 3])
    art = REGULARIZERS.build({**SETTINGS, "weight": 0.7})
    torch.manual_seed(4)
    ours = art(model, x, y).loss
    torch.manual_seed(4)
    x_adv = art.alignment_attack(model, x, y)
    both = torch.cat([x, x_adv]).requires_grad_(True)
    with softplus_surrogate(model, 5.0):
        g_true, g_other = true_and_strongest_other_gradients(model, both, torch.cat([y, y]), create_graph=True)
    triplet = alignment_loss(both.detach().flatten(1), g_true, g_other).mean()  # the reference's mean over 2B rows
    theirs = F.cross_entropy(model(x_adv), y) + 0.7 * triplet
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    for a, b in zip(torch.autograd.grad(ours, list(model.parameters())),
                    torch.autograd.grad(theirs, list(model.parameters())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_alignment_attack_stays_in_the_ball_and_weight_zero_is_ce_there():
    model, x, y = smooth_net(), torch.rand(4, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    art = REGULARIZERS.build({**SETTINGS, "weight": 0.0})
    torch.manual_seed(2)
    x_adv = art.alignment_attack(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-12 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)
    torch.manual_seed(2)
    torch.testing.assert_close(art(model, x, y).loss, F.cross_entropy(model(x_adv), y), rtol=0, atol=0)


def test_one_attack_step_is_a_signed_step_on_the_masked_objective_of_the_reference():
    """The mask: the k entries of largest |true-logit gradient| of the network itself (not its softplus copy) at the
    random start; the objective on the softplus copy, over the masked entries; a step of relative_step * eps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).double()
    x, y = 0.2 + 0.6 * torch.rand(3, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 2, 3])
    art = REGULARIZERS.build({**SETTINGS, "k": None, "steps": 1, "relative_step": 0.5})
    torch.manual_seed(9)
    ours = art.alignment_attack(model, x, y)
    torch.manual_seed(9)
    start = (x + 0.1 * (2 * torch.rand(x.shape, dtype=torch.float64) - 1)).clamp(0, 1).requires_grad_(True)
    (relu_gradient,) = torch.autograd.grad(model(start)[range(3), y].sum(), start)
    mask = relu_gradient.abs().flatten(1).topk(round(36 * 1000 / 3072), dim=1).indices  # the reference's share
    with softplus_surrogate(model, 5.0):
        logits = model(start)
        other = logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
        g_true = torch.autograd.grad(logits[range(3), y].sum(), start, create_graph=True, retain_graph=True)[0]
        g_other = torch.autograd.grad(logits[range(3), other].sum(), start, create_graph=True)[0]
        masked = [t.flatten(1).gather(1, mask) for t in (start, g_true, g_other)]
        objective = F.softplus(F.cosine_similarity(masked[0], masked[2], eps=1e-6)
                               - F.cosine_similarity(masked[0], masked[1], eps=1e-6))
        (direction,) = torch.autograd.grad(objective.sum(), start)
    step = start.detach() + 0.05 * direction.sign()
    expected = torch.minimum(torch.maximum(step, x - 0.1), x + 0.1).clamp(0, 1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-15)


def test_the_attack_moves_the_alignment_objective_up_from_its_start():
    """Signed ascent on softplus(cos(z, g_o) - cos(z, g_y)): the objective at the end exceeds the start's, on
    average over a batch (the steps are small against its curvature)."""
    model, x, y = smooth_net(), 0.2 + 0.6 * torch.rand(16, 1, 6, 6, dtype=torch.float64), torch.randint(0, 4, (16,))
    art = REGULARIZERS.build({**SETTINGS, "k": 36, "steps": 5, "step_size": 0.01})

    def objective(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        with softplus_surrogate(model, 5.0):
            g_true, g_other = true_and_strongest_other_gradients(model, z, y, create_graph=False)
        return F.softplus(cosine(z.detach().flatten(1), g_other) - cosine(z.detach().flatten(1), g_true))

    torch.manual_seed(1)
    start = REGULARIZERS.build({**SETTINGS, "k": 36, "steps": 1, "step_size": 1e-12}).alignment_attack(model, x, y)
    torch.manual_seed(1)
    end = art.alignment_attack(model, x, y)
    assert objective(end).mean() > objective(start).mean()


def test_bad_settings_are_one_line():
    for settings, message in [({"k": 0}, "k must be >= 1 or null"), ({"weight": -1.0}, "weight must be >= 0"),
                              ({"relative_step": 0.0}, "relative_step must be positive or null"),
                              ({"surrogate_beta": 0.0}, "surrogate_beta must be positive")]:
        with pytest.raises(AttrobustError, match=message):
            REGULARIZERS.build({**SETTINGS, **settings})
    model = smooth_net()
    with pytest.raises(ValueError, match="k must be at most the 36 entries"):
        REGULARIZERS.build({**SETTINGS, "k": 37})(model, torch.rand(2, 1, 6, 6, dtype=torch.float64),
                                                  torch.tensor([0, 1]))
