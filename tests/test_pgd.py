"""The shared PGD loop and the registered PGD attack: ball, pixel range, no mutation, batch independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrobust.attacks import PREDICTION_ATTACKS, LinfBall, pgd
from attrobust.attacks.projected_ascent import L2Ball, projected_ascent
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


BALLS = {"linf": lambda x: LinfBall(x, 0.1), "linf_by_offset": lambda x: LinfBall(x, 0.1, by_offset=True),
         "l2": lambda x: L2Ball(x, 0.5)}


def distance(ball, z: torch.Tensor) -> torch.Tensor:
    delta = (z - ball.center).flatten(1)
    return delta.abs().amax(1) if isinstance(ball, LinfBall) else delta.norm(dim=1)


@pytest.mark.parametrize("name", BALLS)
def test_every_ball_samples_projects_and_ascends_inside_itself(name):
    """The ball contract `projected_ascent` relies on: samples and projections lie in the ball and the pixel box,
    a point inside stays put, rows select images, and the steepest-ascent step raises a linear objective."""
    torch.manual_seed(0)
    x = torch.rand(5, 1, 6, 6)
    ball = BALLS[name](x)
    far = x + torch.randn_like(x)
    for z in (ball.sample(), ball.project(far)):
        assert (distance(ball, z) <= ball.eps + 1e-6).all() and z.min() >= 0 and z.max() <= 1
    inside = ball.sample()
    torch.testing.assert_close(ball.project(inside), inside)
    rows = torch.tensor([3, 1])
    assert torch.equal(ball.select(rows).project(far[rows]), ball.project(far)[rows])
    w = torch.randn_like(x)
    step = ball.ascend(x, w, 0.01)
    assert ((step - x) * w).flatten(1).sum(1).gt(0).all()


def test_the_two_linf_projections_are_the_same_set():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 6, 6)
    z = x + 0.3 * torch.randn_like(x)
    torch.testing.assert_close(LinfBall(x, 0.1).project(z), LinfBall(x, 0.1, by_offset=True).project(z))


def test_projected_ascent_stops_the_images_its_after_hook_drops():
    """`after` returns the images still ascending: the others keep their last iterate, and none left stops it."""
    x = torch.zeros(3, 1, 2, 2) + 0.5
    ball = LinfBall(x, 0.3)
    calls = []

    def after(previous, new, rows):
        calls.append(None if rows is None else rows.tolist())
        return torch.tensor([2]) if rows is None else rows[:0]

    out = projected_ascent(lambda z, rows: z + 0.1, ball, steps=5, start=x, after=after)
    assert calls == [None, [2]]
    torch.testing.assert_close(out[:2], x[:2] + 0.1)
    torch.testing.assert_close(out[2], x[2] + 0.2)
