"""The shared PGD loop and the registered PGD attack: ball, pixel range, no mutation, batch independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.attacks import PREDICTION_ATTACKS, LinfBall, pgd
from attrobust.errors import AttrobustError


def ce_objective(model: nn.Module, y: torch.Tensor):
    return lambda z: F.cross_entropy(model(z), y, reduction="none")


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_ball_and_pixel_range_and_leaves_input_alone(tiny_net, random_start):
    torch.manual_seed(1)
    x = torch.rand(8, 1, 12, 12)
    x[:, :, :3] = 0.0  # pixels at the bounds of the range
    x[:, :, -3:] = 1.0
    y = torch.randint(0, 10, (8,))
    before = x.clone()
    x_adv = pgd(ce_objective(tiny_net, y), LinfBall(x, 0.1), steps=7, step_size=0.05, random_start=random_start)
    assert torch.equal(x, before)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not x_adv.requires_grad
    assert all(p.grad is None for p in tiny_net.parameters())


def test_pgd_keeps_the_model_mode(tiny_net):
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    for training in (True, False):
        tiny_net.train(training)
        pgd(ce_objective(tiny_net, y), LinfBall(x, 0.1), steps=2, step_size=0.05)
        assert tiny_net.training is training


def test_pgd_on_a_linear_score_reaches_the_corner_of_the_ball():
    """For f(x) = w.x the maximiser over the ball clipped to [0,1] is clip(x + eps*sign(w), 0, 1)."""
    torch.manual_seed(0)
    w = torch.randn(1, 3, 5, 5)
    x = torch.rand(4, 3, 5, 5)
    x_adv = pgd(lambda z: (z * w).flatten(1).sum(1), LinfBall(x, 0.2), steps=10, step_size=0.05,
                random_start=True)
    expected = (x + 0.2 * w.sign()).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected)


def test_batched_pgd_equals_one_image_at_a_time(tiny_net):
    torch.manual_seed(2)
    x, y = torch.rand(5, 1, 10, 10), torch.randint(0, 10, (5,))
    batched = pgd(ce_objective(tiny_net, y), LinfBall(x, 0.3), steps=5, step_size=0.05, random_start=False)
    single = torch.cat([pgd(ce_objective(tiny_net, y[i:i + 1]), LinfBall(x[i:i + 1], 0.3), steps=5,
                            step_size=0.05, random_start=False) for i in range(5)])
    torch.testing.assert_close(batched, single)


def test_pgd_increases_the_loss(tiny_net):
    torch.manual_seed(3)
    x, y = torch.rand(16, 1, 10, 10), torch.randint(0, 10, (16,))
    objective = ce_objective(tiny_net, y)
    x_adv = pgd(objective, LinfBall(x, 0.3), steps=10, step_size=0.05)
    with torch.no_grad():
        assert objective(x_adv).mean() > objective(x).mean()


def test_pgd_works_under_no_grad(tiny_net):
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with torch.no_grad():
        x_adv = pgd(ce_objective(tiny_net, y), LinfBall(x, 0.1), steps=2, step_size=0.05, random_start=False)
    assert not torch.equal(x_adv, x)


def test_pgd_attack_worst_case_over_restarts(tiny_net):
    attack = PREDICTION_ATTACKS.build({"name": "pgd", "eps": 0.3, "steps": 5, "step_size": 0.05, "restarts": 3})
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    robust = attack.robust(tiny_net, x, y)
    assert robust.dtype == torch.bool and robust.shape == (6,)
    with torch.no_grad():
        correct = tiny_net(x).argmax(1) == y
    assert not (robust & ~correct).any()  # a misclassified clean image is never robust at eps >= 0


@pytest.mark.parametrize("field,value", [("eps", 0.0), ("eps", -0.1), ("step_size", 0.0), ("restarts", 0)])
def test_pgd_attack_rejects_bad_values(field, value):
    cfg = {"name": "pgd", "eps": 0.3, "steps": 5, "step_size": 0.05, field: value}
    with pytest.raises(AttrobustError, match=field):
        PREDICTION_ATTACKS.build(cfg)


def yaml_settings(name: str) -> dict:
    """The attack's YAML with the threat model's interpolations replaced by small test values."""
    import re

    import yaml

    from attrobust.config import config_dir

    text = (config_dir() / "attack" / f"{name}.yaml").read_text(encoding="utf-8")
    for key, value in (("step_size", "0.05"), ("steps", "3"), ("eps", "0.3")):
        text = re.sub(r"\$\{[a-z_.]*\." + key + r"\}", value, text)
    return yaml.safe_load(text)


@pytest.mark.parametrize("name", PREDICTION_ATTACKS.names())
def test_prediction_attack_contract(name, tiny_net):
    """Every registered prediction attack, from its YAML: a description, and for each image a bool that is never true
    for an image the model gets wrong when clean."""
    attack = PREDICTION_ATTACKS.build(yaml_settings(name))
    x, y = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3
    torch.manual_seed(0)
    robust = attack.robust(tiny_net.eval(), x, y)
    assert robust.shape == (6,) and robust.dtype == torch.bool and isinstance(attack.describe(), str)
    with torch.no_grad():
        correct = tiny_net(x).argmax(1) == y
    assert not (robust & ~correct).any()
