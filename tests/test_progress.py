"""Progress: plain periodic log lines off a terminal, a Rich bar on one."""

from __future__ import annotations

import contextvars
import logging

from attrobust.engine.progress import ProgressReporter


def test_plain_progress_logs_periodic_lines(caplog):
    caplog.set_level(logging.INFO, logger="attrobust")
    with ProgressReporter("epoch 1/1", total=3, log_every_s=0.0, interactive=False) as progress:
        for _ in range(3):
            progress.advance(1, lambda: "acc=0.5")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("epoch 1/1: 3/3") and lines[-1].endswith("acc=0.5")


def test_rich_progress_runs(capsys):
    with ProgressReporter("evaluate", total=2, interactive=True) as progress:
        progress.advance(1, lambda: "x")
        progress.advance(1, lambda: "y")
    assert progress.done == 2


def test_a_part_eta_covers_the_parts_after_it(caplog):
    from attrobust.engine.progress import later_parts_s, set_command_plan

    caplog.set_level(logging.INFO, logger="attrobust")

    def attack_parts() -> None:  # as a job does: it sets the plan in its own context (launch.HydraTask)
        set_command_plan([("evaluate", 10.0), ("attack topk", 500.0), ("attack random_sign", 250.0)])
        with ProgressReporter("attack topk", total=4, log_every_s=0.0, interactive=False) as progress:
            progress.advance(1)
        with ProgressReporter("attack random_sign", total=4, log_every_s=0.0, interactive=False) as progress:
            progress.advance(1)

    contextvars.copy_context().run(attack_parts)
    assert later_parts_s("evaluate") == 0.0  # the job's plan ended with its context
    lines = [r.getMessage() for r in caplog.records]
    assert "s for the whole command)" in lines[0]  # 250 s of random_sign after top-k's own ETA
    assert "whole command" not in lines[1]  # the last part: its own ETA is the command's

    def two_parts() -> None:
        set_command_plan([("a", 1.0), ("b", 100.0)])
        with ProgressReporter("a", total=2, interactive=True) as bar:  # the bar shows the command's time too
            bar.advance(1)
            bar.advance(1)

    contextvars.copy_context().run(two_parts)


def test_cost_lines_say_the_total_and_the_cheaper_way_when_long_on_a_cpu():
    import torch

    from attrobust.engine.cost import Part, describe
    from attrobust.engine.train import training_cost

    line = describe([Part("accuracy", 0.4), Part("topk", 2460.0), Part("random_sign", 6000.0)], torch.device("cpu"),
                    "fewer images")
    assert line.startswith("estimated cost on cpu") and "accuracy <1 s, topk 41 min, random_sign 100 min" in line
    assert line.endswith("about 2.4 h in all; long for a CPU: fewer images")
    assert "long for" not in describe([Part("topk", 2460.0), Part("x", 6000.0)], torch.device("cuda"), "fewer")
    assert training_cost(24.5, 800, torch.device("cpu")).startswith("estimated cost on cpu: 800 steps of about "
                                                                     "24.5 s (measured on the run's second step): "
                                                                     "about 5.4 h; long for a CPU")
    assert training_cost(0.0111, 800, torch.device("cpu")).endswith("about 9 s")
