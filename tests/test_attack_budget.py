"""The attack's pass-saving knobs (attrobust/attacks/budget.py): off, they change nothing; on, they spend fewer passes
and the attack stays in its ball; the random controls ignore patience; a fixed-pass explainer refuses them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attacks.attribution import AttributionAttack
from attrobust.attributions import saliency_map
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from test_attribution_attacks import correctly_classified, smooth_net

SETTINGS = {"name": "topk", "eps": 0.2, "steps": 4, "step_size": 0.05, "k": 20, "eval_k": 10, "restarts": 1}
FIELDS = ("perturbed", "perturbed_saliency", "kendall", "criterion", "qualified", "moved")


class RowCounter(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def attack(ig_steps: int = 8, explainer: str = "ig", **settings) -> AttributionAttack:
    built = EXPLAINERS.build({"name": "ig", "steps": ig_steps} if explainer == "ig" else {"name": explainer})
    return ATTRIBUTION_ATTACKS.build({**SETTINGS, **settings}, explainer=built)


def run(chosen: AttributionAttack, seed: int = 0):
    """The attack's result on six images of a small ReLU network, and the rows it sent through the network."""
    model = RowCounter(smooth_net())
    x, y = correctly_classified(model, n=6)
    torch.manual_seed(seed)
    return chosen.run(model, x, y), model.rows, x


def assert_same(a, b) -> None:
    for field in FIELDS:
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0, msg=field)


@pytest.mark.parametrize("random_start", [False, True])
def test_the_explainers_own_points_and_a_patience_as_long_as_the_attack_change_nothing(random_start):
    plain, rows, _ = run(attack(random_start=random_start))
    knobs, knob_rows, _ = run(attack(random_start=random_start, direction_points=8, selection_points=8,
                                     patience=SETTINGS["steps"]))
    assert_same(plain, knobs)
    assert rows == knob_rows


@pytest.mark.parametrize("knob", ["direction_points", "selection_points"])
def test_fewer_points_spend_fewer_passes_and_score_with_the_explainers_own_maps(knob):
    full, full_rows, x = run(attack(ig_steps=12))
    cheap_attack = attack(ig_steps=12, **{knob: 4})
    cheap, cheap_rows, _ = run(cheap_attack)
    assert cheap_rows < full_rows
    assert (cheap.perturbed - x).abs().max() <= SETTINGS["eps"] + 1e-6
    assert 0 <= cheap.perturbed.min() and cheap.perturbed.max() <= 1
    model = smooth_net()
    with torch.no_grad():
        y = model(x).argmax(1)
    scored = saliency_map(EXPLAINERS.build({"name": "ig", "steps": 12}).explain(model, cheap.perturbed, y))
    kept = cheap.qualified
    assert kept.any() and (cheap.kendall[kept] < 1).all()  # qualified by the scored maps
    torch.testing.assert_close(cheap.perturbed_saliency[kept], scored[kept])
    assert f"{knob.split('_')[0]} ig(4)" in cheap_attack.describe() and knob.split("_")[0] not in \
        attack(ig_steps=12).describe()


def test_patience_stops_images_whose_criterion_stalls_and_keeps_a_prefix_of_their_path():
    steps = 8
    full, full_rows, x = run(attack(steps=steps))
    patient_attack = attack(steps=steps, patience=1)
    patient, patient_rows, _ = run(patient_attack)
    assert patient_rows < full_rows
    assert (patient.perturbed - x).abs().max() <= SETTINGS["eps"] + 1e-6
    # the same deterministic path, cut short: the full run's best is at least as strong
    assert (full.criterion <= patient.criterion + 1e-6).all()
    assert "patience 1" in patient_attack.describe()


@pytest.mark.parametrize("name", ["random_noise", "random_sign"])
def test_the_random_controls_run_every_step_whatever_the_patience(name):
    plain, rows, _ = run(attack(name=name, random_start=True), seed=3)
    patient, patient_rows, _ = run(attack(name=name, random_start=True, patience=1), seed=3)
    assert_same(plain, patient)
    assert rows == patient_rows


@pytest.mark.parametrize("setting", [{"direction_points": 0}, {"patience": 0}])
def test_a_knob_below_one_is_refused_by_name(setting):
    with pytest.raises(AttrobustError, match=f"{next(iter(setting))} must be >= 1 \\(or null\\)"):
        attack(**setting)


def test_an_explainer_with_a_fixed_pass_count_refuses_direction_points():
    with pytest.raises(AttrobustError, match="gradient has a fixed 1 pass.*direction_points and selection_points"):
        attack(explainer="gradient", direction_points=4)
    assert attack(explainer="gradient").direction_explainer.registry_name == "gradient"


def test_a_protocols_budget_divides_steps_restarts_and_direction_points_and_keeps_the_reach():
    from attrobust.engine.protocol import Protocol

    cheaper = Protocol("cheaper", random_start=True, adds_lens_recall=True, max_restarts=1, step_divisor=5,
                       direction_divisor=10, selection_divisor=4, patience=4)
    on_ig = cheaper.attack(attack(ig_steps=100, steps=100, step_size=0.01, restarts=3))
    assert (on_ig.steps, on_ig.restarts, on_ig.direction_points, on_ig.selection_points, on_ig.patience,
            on_ig.random_start) == (20, 1, 10, 25, 4, True)
    assert on_ig.steps * on_ig.step_size == pytest.approx(100 * 0.01)
    on_gradient = cheaper.attack(attack(explainer="gradient"))
    assert on_gradient.direction_points is None and on_gradient.selection_points is None
    chosen = attack(ig_steps=100, direction_points=50, patience=7)  # what the user set stays
    assert (cheaper.attack(chosen).direction_points, cheaper.attack(chosen).patience) == (50, 7)
    plain = attack()
    assert Protocol("same", random_start=False, adds_lens_recall=False).attack(plain) is plain


def test_the_frontier_turns_one_knob_at_a_time_and_runs_a_protocol_as_evaluate_would():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "attack_frontier.py"
    spec = importlib.util.spec_from_file_location("attack_frontier", path)
    frontier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontier)
    base = {**SETTINGS, "steps": 100, "step_size": 0.01, "restarts": 3, "random_start": True}
    chosen = frontier.variants(base, 100, ["all:restarts=1,steps=20,step_size=0.05"], quick=True)
    assert chosen[0] == ("base", "robust", base) and chosen[-1][2]["steps"] == 20
    for knob, value, settings in chosen[1:-1]:
        changed = {key for key in settings.keys() | base.keys() if settings.get(key) != base.get(key)}
        assert changed == ({"steps", "step_size"} if knob == "steps" else {knob}), (knob, value)
        assert settings["steps"] * settings["step_size"] == pytest.approx(1.0)
    explainer = EXPLAINERS.build({"name": "ig", "steps": 100})
    robust, fast = (settings for _, _, settings in frontier.protocols(base, explainer, ["robust", "fast"]))
    assert robust == base
    assert {key: fast[key] for key in ("restarts", "steps", "direction_points", "selection_points")} == \
        {"restarts": 2, "steps": 50, "direction_points": 20, "selection_points": 20}
