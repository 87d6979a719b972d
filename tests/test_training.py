"""The training engine and the objectives: contract tests over every registered regulariser, checkpoints, resume."""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import signal

import pytest
import torch

from attrobust.data import ImageSet
from attrobust.engine.checkpoint import TRAIN_STATE_FILE, load_checkpoint, save_checkpoint
from attrobust.engine.train import TrainSettings, fit
from attrobust.errors import AttrobustError
from attrobust.optim import OPTIMIZERS, lr_factor
from attrobust.regularizers import REGULARIZERS, Objective
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput
from attrobust.regularizers.ig_terms import IGObjective
from conftest import TinyNet

INNER = {"eps": 0.3, "steps": 2, "step_size": 0.1}


def small_settings(name: str) -> dict:
    """Cheap settings for what the objective's class needs: an inner ball and PGD, IG points (a new objective is
    tested the moment it is registered)."""
    cls = REGULARIZERS.get(name)
    settings = dict(INNER) if issubclass(cls, AdversarialObjective) else {}
    if issubclass(cls, IGObjective):
        settings.update(ig_steps=4, approx_factor=2)
    if "k" in {field.name for field in dataclasses.fields(cls)}:
        settings["k"] = 4  # a top-k of an 8x8 image
    return settings


def build_reg(name: str, **overrides):
    return REGULARIZERS.build({"name": name, **small_settings(name), **overrides})


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regulariser_keeps_the_objective_contract(name, tiny_net):
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    x_before, y_before = x.clone(), y.clone()
    for training in (True, False):
        tiny_net.train(training)
        out = build_reg(name)(tiny_net, x, y)
        assert tiny_net.training is training
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (6, 10)
    reg = build_reg(name)  # what the engine reads, declared by the base class
    assert isinstance(reg, Objective) and reg.reduction in ("sum", "mean")
    assert isinstance(reg.second_order, bool) and isinstance(reg.couples_the_batch, bool)
    assert isinstance(reg.for_epoch(0), type(reg))
    reg.check_fits((1, 8, 8))  # the images it just trained on fit
    assert all(term.ndim == 0 and not term.requires_grad for term in out.terms.values())
    out.loss.backward()
    for pname, param in tiny_net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(param.grad).all()


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_sum_reduction_is_batch_size_times_mean(name, tiny_net):
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    torch.manual_seed(1)
    total = build_reg(name, reduction="sum")(tiny_net, x, y).loss
    torch.manual_seed(1)
    mean = build_reg(name, reduction="mean")(tiny_net, x, y).loss
    torch.testing.assert_close(total, 5 * mean)


def test_pgd_eps_warmup_ramps_linearly_then_holds():
    reg = build_reg("pgd", eps_warmup_epochs=3)
    assert [round(reg.for_epoch(e).eps, 6) for e in range(5)] == [0.1, 0.2, 0.3, 0.3, 0.3]
    assert build_reg("pgd", eps_warmup_epochs=0).for_epoch(0).eps == 0.3  # the reference: full eps at once
    assert build_reg("pgd").eps_warmup_epochs == 3  # the default is the CLI's (conf/reg/pgd.yaml)


def test_bad_reduction_is_rejected():
    with pytest.raises(AttrobustError, match="reduction must be one of sum, mean"):
        build_reg("natural", reduction="avg")


def test_cosine_schedule():
    assert lr_factor("constant", 7, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == 1.0
    assert math.isclose(lr_factor("cosine", 5, 10), 0.5)
    assert OPTIMIZERS.build({"name": "adam", "lr": 0.1, "schedule": "cosine"}).lr_at(10, 10) < 1e-12


def test_piecewise_schedule_follows_the_reference_step_size_schedule():
    sgd = OPTIMIZERS.build({"name": "sgd", "schedule": "piecewise",
                            "milestones": [[0, 1e-3], [500, 1e-2], [60000, 1e-3]]})
    # TensorFlow's piecewise_constant keeps the old rate AT a boundary: step 500 still runs at 1e-3
    assert [sgd.lr_at(0, 10, step) for step in (0, 499, 500, 501, 60000, 60001, 70000)] == [
        1e-3, 1e-3, 1e-3, 1e-2, 1e-2, 1e-3, 1e-3]
    # tf.train.piecewise_constant(x, boundaries, values) is values[number of boundaries < x]
    boundaries, values = [500, 60000], [1e-3, 1e-2, 1e-3]
    for step in [*range(0, 1000), *range(59990, 60010), 70000]:
        assert sgd.lr_at(0, 10, step) == values[bisect.bisect_left(boundaries, step)]
    for milestones in ([], [[5, 1e-3]], [[0, 1e-3], [0, 1e-2]], [[0, -1.0]]):
        with pytest.raises(AttrobustError, match="piecewise' needs milestones"):
            OPTIMIZERS.build({"name": "sgd", "schedule": "piecewise", "milestones": milestones})
    with pytest.raises(AttrobustError, match="only used by schedule 'piecewise'"):
        OPTIMIZERS.build({"name": "sgd", "milestones": [[0, 1e-3]]})


def test_piecewise_rates_apply_per_step(tmp_path):
    model, history = run_fit(tmp_path, epochs=3)
    assert [row["lr"] for row in history] == [1e-2, 1e-2, 5e-3]  # the rate of each epoch's first step (0, 3, 6)


def toy_data(n: int = 40) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(n) % 10)


class Crash(Exception):
    """Stands for a kill: nothing is saved when it is raised."""


def run_fit(run_dir, epochs: int | None = None, reg: str = "pgd", signal_at_step: int | None = None,
            crash_at_step: int | None = None, batch_sizes: list[int] | None = None,
            signum: signal.Signals = signal.SIGTERM, **settings):
    """Train TinyNet on toy data (40 images, batches of 16 unless `settings` say otherwise); `signal_at_step` sends
    this process `signum` during that optimizer step, `crash_at_step` raises Crash before it; `batch_sizes` collects
    the size of every batch."""
    torch.manual_seed(0)
    model = TinyNet()

    # 40 images in batches of 16: 3 steps per epoch, so the rate changes inside epochs 2 and 3
    spec = OPTIMIZERS.build({"name": "adam", "schedule": "piecewise", "milestones": [[0, 1e-2], [4, 5e-3], [7, 1e-3]]})
    optimizer = spec.build(model.parameters())
    settings = TrainSettings(**{"epochs": epochs, "batch_size": 16, **settings})
    def lr_at(epoch: int, step: int) -> float:  # read once before each step: a place to deliver the signal
        if step == signal_at_step:
            os.kill(os.getpid(), signum)
        if step == crash_at_step:
            raise Crash(step)
        return spec.lr_at(epoch, 3, step)

    objective = build_reg(reg)
    if batch_sizes is not None:
        inner = objective

        class Recording(Objective):
            def __call__(self, model, x, y):
                batch_sizes.append(len(x))
                return inner(model, x, y)

        objective = Recording(reduction=inner.reduction)
    history = fit(model, objective, optimizer, lr_at, toy_data(), settings, seed=0, run_dir=run_dir,
                  metadata={"resume_key": "k"})
    return model, history


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def without_seconds(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_steps_equal_epochs_when_the_batch_divides_the_data(tmp_path):
    """40 images in batches of 8: 5 full batches per epoch, so 3 epochs are 15 steps, trained identically."""
    by_epochs, epochs_log = run_fit(tmp_path / "a", epochs=3, batch_size=8)
    by_steps, steps_log = run_fit(tmp_path / "b", steps=15, batch_size=8)
    assert same_weights(by_epochs, by_steps)
    assert without_seconds(epochs_log) == without_seconds(steps_log)
    assert [row["step"] for row in steps_log] == [5.0, 10.0, 15.0]


def test_steps_draw_full_batches_and_stop_inside_an_epoch(tmp_path):
    """40 images in batches of 16: epochs take 16 + 16 + 8; steps take 2 full batches per epoch (as the reference's
    get_next_batch(multiple_passes=True)), and 5 steps end one step into the third epoch."""
    sizes: list[int] = []
    run_fit(tmp_path / "a", epochs=2, batch_sizes=sizes)
    assert sizes == [16, 16, 8, 16, 16, 8]
    sizes.clear()
    _, history = run_fit(tmp_path / "b", steps=5, batch_sizes=sizes)
    assert sizes == [16] * 5
    assert [row["step"] for row in history] == [2.0, 4.0, 5.0] and [row["epoch"] for row in history] == [1, 2, 3]


def test_a_run_killed_mid_epoch_resumes_from_its_last_step_checkpoint_bitwise(tmp_path):
    """12 steps of 8 (5 per epoch) with last.pt every 3 steps: killed before step 9 (the fourth of epoch 2), the re-run
    resumes after step 6 (one batch into epoch 2) and ends with the weights and log of an uninterrupted run."""
    run = {"steps": 12, "batch_size": 8, "checkpoint_every": 3}
    straight, straight_log = run_fit(tmp_path / "a", **run)
    with pytest.raises(Crash):
        run_fit(tmp_path / "b", **run, crash_at_step=8)
    state = load_checkpoint(tmp_path / "b" / TRAIN_STATE_FILE)
    assert state["epoch"] == 1 and state["partial"]["batch"] == 1 and state["partial"]["seen"] == 8
    resumed, resumed_log = run_fit(tmp_path / "b", **run)
    assert same_weights(straight, resumed)
    assert without_seconds(straight_log) == without_seconds(resumed_log)
    unsaved, _ = run_fit(tmp_path / "c", steps=12, batch_size=8)
    assert same_weights(straight, unsaved)  # checkpointing itself changes nothing


@pytest.mark.parametrize("poison,what", [("loss", "non-finite loss term 'ce'"),
                                          ("gradient", "non-finite gradient of ")])
def test_training_stops_at_the_first_non_finite_step_and_keeps_the_last_good_state(tmp_path, poison, what):
    """A NaN in the 5th step (epoch 2 of 3-step epochs): one error naming it; last.pt still holds epoch 1."""
    class Poisoned(Objective):
        calls = 0

        def __call__(self, model, x, y):
            out = build_reg("natural")(model, x, y)
            Poisoned.calls += 1
            if Poisoned.calls == 5:
                if poison == "loss":
                    return LossOutput(out.loss * float("nan"), out.logits, {"ce": out.terms["ce"] * float("nan")})
                weight = next(model.parameters())  # sqrt at 0: a finite loss with an infinite gradient
                return LossOutput(out.loss + (weight - weight.detach()).sum().sqrt(), out.logits, out.terms)
            return out

    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(AttrobustError, match=f"training diverged: {what}.* in epoch 2 at batch 2 \\(step 5, "
                                             f"learning rate 0.1\\); the step was not applied, .*last.pt keeps "
                                             f"the last saved state"):
        fit(model, Poisoned(), optimizer, lambda e, step: 0.1, toy_data(), TrainSettings(batch_size=16, epochs=3), 0,
            tmp_path, {"resume_key": "k"})
    state = load_checkpoint(tmp_path / TRAIN_STATE_FILE)
    assert state["epoch"] == 1 and "partial" not in state
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the poisoned step changed nothing


def test_weights_made_non_finite_by_the_last_update_are_never_saved(tmp_path):
    """One step per epoch with a NaN learning rate: finite loss and gradients, NaN weights after the update."""
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=float("nan"))
    with pytest.raises(AttrobustError, match=r"the weights became non-finite \(.*\) by the end of epoch 1; no "
                                             r"state was saved before it \(nothing to resume\) and no model.pt is "
                                             r"written"):
        fit(model, build_reg("natural"), optimizer, lambda e, step: float("nan"), toy_data(),
            TrainSettings(batch_size=40, epochs=2), 0, tmp_path, {"resume_key": "k"})
    assert not (tmp_path / TRAIN_STATE_FILE).exists()


def test_a_run_that_stopped_inside_an_epoch_is_not_extended(tmp_path):
    run_fit(tmp_path, steps=5)  # epochs of 2, 2 and 1 steps
    _, history = run_fit(tmp_path, steps=5)  # the same command again: nothing left to do
    assert [row["step"] for row in history] == [2.0, 4.0, 5.0]
    with pytest.raises(AttrobustError, match="ended after step 5, inside epoch 3: .* use a new run dir"):
        run_fit(tmp_path, steps=7)


@pytest.mark.parametrize("values,message", [({"epochs": 2, "steps": 5}, "not both"),
                                            ({"epochs": None, "steps": None}, "not neither"),
                                            ({"steps": 5, "checkpoint_every": 0}, "checkpoint_every must be")])
def test_the_length_is_counted_one_way(values, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(batch_size=4, **{"epochs": None, **values})
    with pytest.raises(AttrobustError, match="batch_size=50 is larger than the 40 training images"):
        TrainSettings(batch_size=50, steps=3).plan(40)


def test_resume_ends_with_the_same_weights_and_log(tmp_path):
    """Stop after one epoch, then re-run to three: identical to three uninterrupted epochs (PGD uses the RNG)."""
    straight, straight_log = run_fit(tmp_path / "a", epochs=3)
    run_fit(tmp_path / "b", epochs=1)
    resumed, resumed_log = run_fit(tmp_path / "b", epochs=3)
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop(straight_log) == drop(resumed_log)
    assert len((tmp_path / "b" / "train_log.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_mid_epoch_saves_the_position_and_resumes_bitwise(tmp_path, signum):
    """SIGTERM (preemption) or SIGUSR1 (a time-limit warning) during the second step of epoch 2: last.pt holds epoch 1
    + one batch; the re-run ends identical."""
    straight, straight_log = run_fit(tmp_path / "a", epochs=3)
    with pytest.raises(AttrobustError, match=f"stopped by {signum.name} in epoch 2 after batch 2; .* to resume"):
        run_fit(tmp_path / "b", epochs=3, signal_at_step=4, signum=signum)
    state = load_checkpoint(tmp_path / "b" / TRAIN_STATE_FILE)
    assert state["epoch"] == 1 and state["partial"]["batch"] == 2 and state["partial"]["seen"] == 32
    assert signal.getsignal(signum) is signal.SIG_DFL  # the handler is removed again
    resumed, resumed_log = run_fit(tmp_path / "b", epochs=3)
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop(straight_log) == drop(resumed_log)


def test_resume_refuses_a_different_configuration(tmp_path):
    run_fit(tmp_path, epochs=1)
    model = TinyNet()
    spec = OPTIMIZERS.build({"name": "adam"})
    with pytest.raises(AttrobustError, match="different dataset/model/reg/optim/seed"):
        fit(model, build_reg("natural"), spec.build(model.parameters()), lambda e, step: 1e-3, toy_data(),
            TrainSettings(epochs=2, batch_size=16), 0, tmp_path, {"resume_key": "other"})


def test_checkpoint_round_trip(tmp_path):
    state = {"model_state": TinyNet().state_dict(), "history": [{"epoch": 1.0}], "model_cfg": {"name": "x"}}
    save_checkpoint(state, tmp_path / "c.pt", "model")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["kind"] == "model" and loaded["model_cfg"] == {"name": "x"}
    for key, value in state["model_state"].items():
        assert torch.equal(loaded["model_state"][key], value)


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / TRAIN_STATE_FILE
    save_checkpoint({"epoch": 1}, path, "train_state")
    before = path.read_bytes()

    def broken_save(payload, target):
        target.write(b"half")  # the temporary file's handle
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path, "train_state")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN_STATE_FILE]


@pytest.mark.parametrize("content,message", [(b"garbage", "corrupt checkpoint"), (None, "checkpoint not found")])
def test_bad_checkpoints_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AttrobustError, match=message):
        load_checkpoint(path)


def test_foreign_torch_file_is_rejected(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(AttrobustError, match="not an attrobust checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_train_settings_reject_bad_values():
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainSettings(epochs=1, batch_size=0)


def test_a_run_on_a_schedule_over_its_length_is_not_extended_to_another_length(tmp_path):
    """A cosine schedule's rates depend on the number of epochs: re-running a finished run dir with more epochs would
    not give a run of that length, so it is refused; the same length resumes (nothing left to do)."""
    def fit_for(epochs: int):
        torch.manual_seed(0)
        model = TinyNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return fit(model, build_reg("natural"), optimizer, lambda e, step: 0.1 * (1 + math.cos(math.pi * e / epochs)),
                   toy_data(), TrainSettings(batch_size=16, epochs=epochs), 0, tmp_path,
                   {"resume_key": "k", "schedule_epochs": epochs})

    assert len(fit_for(2)) == 2 and len(fit_for(2)) == 2
    with pytest.raises(AttrobustError, match="schedule over 2 epochs; 3 epochs would change the rate"):
        fit_for(3)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimiser_contract(name):
    """Every registered optimiser, from its YAML: a rate for every epoch, and a step that lowers a quadratic."""
    import yaml

    from attrobust.config import config_dir

    spec = OPTIMIZERS.build(yaml.safe_load((config_dir() / "optim" / f"{name}.yaml").read_text()))
    assert all(0 <= spec.lr_at(epoch, 10) <= spec.lr for epoch in range(10))
    weight = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    optimizer = spec.build([weight])
    for group in optimizer.param_groups:
        group["lr"] = spec.lr_at(0, 10)
    loss = weight.square().sum()
    loss.backward()
    optimizer.step()
    assert weight.square().sum() < loss


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regulariser_trains_a_vision_transformer(name):
    """model=vit through every training objective: a finite loss whose gradient reaches every weight."""
    from attrobust.models.vit import vit

    torch.manual_seed(0)
    net = vit(1, (8, 8), 10, patch=4, dim=8, depth=1, heads=2, mlp=16)
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    out = build_reg(name)(net.train(), x, y)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    reached = [pname for pname, param in net.named_parameters() if param.grad is not None and param.grad.abs().sum()]
    assert len(reached) == len(list(net.parameters())), f"{name}: no gradient reaches some weights"
