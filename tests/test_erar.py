"""ERAR against a direct, per-example and per-path-point computation written here (float64), its weight-0 limit,
the gradients of its loss with respect to the weights, and the bounded variant."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attrobust.errors import AttrobustError
from attrobust.regularizers import REGULARIZERS

SETTINGS = {"eps": 0.2, "steps": 2, "step_size": 0.1, "ig_steps": 4, "approx_factor": 2}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).double()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 2, 4, 4, generator=generator, dtype=torch.float64)
    x_adv = (x + 0.2 * (2 * torch.rand(x.shape, generator=generator, dtype=torch.float64) - 1)).clamp(0, 1)
    return x, x_adv, torch.tensor([0, 2, 3])


def gradient(score, z: torch.Tensor) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(z), z)
    return grad


def probability(model: nn.Module, z: torch.Tensor, label: int) -> torch.Tensor:
    return F.softmax(model(z), dim=1)[0, label]


def path_mean(score, start: torch.Tensor, end: torch.Tensor, m: int) -> torch.Tensor:
    """(end - start) * (1/m) sum_k grad score at start + k/m (end - start), one point at a time."""
    total = sum(gradient(score, start + k / m * (end - start)) for k in range(1, m + 1))
    return (end - start) * total / m


def strongest_other(model: nn.Module, z: torch.Tensor, label: int) -> int:
    p = F.softmax(model(z), dim=1)[0].detach().clone()
    p[label] = -1
    return int(p.argmax())


def direct_terms(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, m: int):
    """Each term for each example alone, one path point at a time, as the ERAR code writes its sums."""
    out = {"B": [], "C": [], "TCA": [], "NCA": []}
    for i in range(len(y)):
        xi, ai, label = x[i:i + 1], x_adv[i:i + 1], int(y[i])
        zero = torch.zeros_like(xi)
        out["B"].append(path_mean(partial(probability, model, label=label), zero, xi, m))
        cross_entropy = partial(lambda z, c: F.cross_entropy(model(z), torch.tensor([c])), c=label)
        out["C"].append(-path_mean(cross_entropy, xi, ai, m))
        true = path_mean(partial(probability, model, label=label), zero, ai, m)
        negative = 0
        for k in range(1, m + 1):  # the negative class is chosen at each path point
            z = k / m * ai
            negative = negative + gradient(partial(probability, model, label=strongest_other(model, z, label)), z)
        negative = ai * negative / m
        out["TCA"].append(F.softmax(true.sum(1).flatten(), 0))
        out["NCA"].append(F.softmax(negative.sum(1).flatten(), 0))
    return {key: torch.cat(value) if key in "BC" else torch.stack(value) for key, value in out.items()}


def sign(value: float) -> int:
    return (value > 0) - (value < 0)


def test_every_term_equals_a_direct_computation():
    model, (x, x_adv, y) = tiny_net(), batch()
    erar = REGULARIZERS.build({"name": "erar", **SETTINGS, "weight": 0.1})
    got = erar.terms(model, x, x_adv, y)
    want = direct_terms(model, x, x_adv, y, SETTINGS["ig_steps"])
    uniform = 1.0 / 16
    kl = lambda q: (uniform * torch.log(uniform / q)).sum(1)  # noqa: E731
    torch.testing.assert_close(got.kl_true, kl(want["TCA"]), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.kl_negative, kl(want["NCA"]), rtol=1e-10, atol=1e-12)
    b, c = want["B"].flatten(1).tolist(), want["C"].flatten(1).tolist()
    mismatched = torch.tensor([sum(abs(cj) for bj, cj in zip(bi, ci, strict=True) if sign(bj) != sign(cj))
                               for bi, ci in zip(b, c, strict=True)], dtype=torch.float64)
    matched = torch.tensor([sum(bj * cj for bj, cj in zip(bi, ci, strict=True) if sign(bj) == sign(cj))
                            for bi, ci in zip(b, c, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(got.mismatched, mismatched, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.matched, matched, rtol=1e-10, atol=1e-12)
    assert (mismatched > 0).all() and (matched != 0).all()  # both sums are exercised
    total = (got.kl_negative - got.kl_true) + got.mismatched + got.matched
    torch.testing.assert_close(got.total, total)


def test_weight_zero_is_ig_sum_norm_at_weight_zero_loss_and_gradients():
    model, (x, _, y) = tiny_net(), batch()
    outputs = []
    for name in ("erar", "ig_sum_norm"):
        torch.manual_seed(3)  # the same random start of the inner PGD
        loss = REGULARIZERS.build({"name": name, **SETTINGS, "weight": 0.0})(model, x, y).loss
        outputs.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
    (erar_loss, erar_grads), (sum_loss, sum_grads) = outputs
    assert torch.equal(erar_loss, sum_loss)
    assert all(torch.equal(a, b) for a, b in zip(erar_grads, sum_grads, strict=True))


@pytest.mark.parametrize("true_class_kl", ["reference", "bounded"])
def test_the_loss_has_the_gradients_gradcheck_finds(true_class_kl):
    model, (x, x_adv, y) = tiny_net(), batch()
    erar = REGULARIZERS.build({"name": "erar", **SETTINGS, "weight": 0.1, "true_class_kl": true_class_kl})
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def loss(*values: torch.Tensor) -> torch.Tensor:
        state = dict(zip(names, values, strict=True))
        net = lambda z: functional_call(model, state, (z,))  # noqa: E731
        ce = F.cross_entropy(net(x_adv), y, reduction="sum")
        return ce + erar.weight * erar.terms(_Module(net), x, x_adv, y).total.sum()

    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-5)


class _Module(nn.Module):
    """A callable as a module (the terms call `model(z)`)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def test_the_bounded_variant_stays_within_its_bound_and_the_log_has_every_term():
    model, (x, x_adv, y) = tiny_net(), batch()
    bounded = REGULARIZERS.build({"name": "erar", **SETTINGS, "true_class_kl": "bounded"})
    kl = bounded.terms(model, x, x_adv, y).kl_true
    assert ((kl >= 0) & (kl <= math.log(16))).all()
    out = REGULARIZERS.build({"name": "erar", **SETTINGS})(model, x, y)
    assert {"ce_adv", "acc_adv", "kl_true", "kl_negative", "shift_mismatched", "shift_matched"} <= set(out.terms)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    with pytest.raises(AttrobustError, match="true_class_kl must be one of reference, bounded, got 'loose'"):
        REGULARIZERS.build({"name": "erar", **SETTINGS, "true_class_kl": "loose"})
