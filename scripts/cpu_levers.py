"""The CPU levers, measured: each switch on against off, timed in turn in one run, with the largest difference it
makes in the values.

Two workloads on the first N test images of a trained model: the attack on explanations (top-k on IG, a random start,
`--steps` steps; its IN and Kendall per image) and PGD-40 accuracy (its per-image robustness and the adversarial
images). The levers: bfloat16 autocast of the forward passes (`accel.amp`), the NHWC layout (`accel.channels_last`),
`torch.compile` (`accel.compile`: first-order passes only, so PGD only) and the thread count (1 against all cores).
Each variant runs in turn within every repeat, from the same random starts; the table gives each one's median
seconds, its ratio to the plain run (on / off: below 1 is faster) and the largest difference in each of its values
(IN and Kendall per image; robust per image and the adversarial pixels).

    python scripts/cpu_levers.py --checkpoint outputs/train/<run> --images 16 --repeats 3 --out outputs/cpu_levers
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from attrobust.atomic import write_text_atomic
from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS
from attrobust.engine.accel import CompiledOrEager
from attrobust.engine.attribution import score
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.metrics import build_metrics
from attrobust.trained import checkpoint_threat, restore_checkpoint

METRICS = build_metrics(["topk_intersection", "kendall"])
LEVERS = ("plain", "amp", "channels_last", "compile", "one_thread")


def variant_model(model: nn.Module, lever: str) -> nn.Module:
    if lever == "channels_last":
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    if lever == "compile":
        return CompiledOrEager(model)
    return model


def workloads(threat: Any, ig_steps: int, steps: int) -> dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                                                            dict[str, torch.Tensor]]]:
    attack_cfg = threat["attribution_attack"]
    explainer = EXPLAINERS.build({"name": "ig", "steps": ig_steps})
    attack = ATTRIBUTION_ATTACKS.build({"name": "topk", "eps": float(threat["eps"]), "steps": steps,
                                        "step_size": float(attack_cfg["step_size"]) * attack_cfg["steps"] / steps,
                                        "k": attack_cfg["k"], "eval_k": attack_cfg["eval_k"], "restarts": 1,
                                        "random_start": True}, explainer=explainer)
    pgd = PREDICTION_ATTACKS.build({"name": "pgd", "eps": float(threat["eps"]), "steps": int(threat["pgd"]["steps"]),
                                    "step_size": float(threat["pgd"]["step_size"])})

    def on_explanations(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        result = attack.run(model, x, y)
        return {column: value.double() for column, value in score(result, METRICS, attack.eval_k).items()}

    def on_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        adversarial = pgd.perturb(model, x, y)
        with torch.inference_mode():
            robust = (model(adversarial).argmax(1) == y).double()
        return {"robust": robust, "adversarial": adversarial.double().flatten(1)}

    return {"attack on IG": on_explanations, "PGD": on_predictions}


def run(levers: tuple[str, ...], work: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int,
        threads: int) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
    models = {lever: variant_model(model, lever) for lever in levers}
    seconds: dict[str, list[float]] = {lever: [] for lever in levers}
    values: dict[str, dict[str, torch.Tensor]] = {}
    for repeat in range(repeats + 1):  # the first round warms up (allocations, compilation) and is not timed
        for lever in levers:
            torch.set_num_threads(1 if lever == "one_thread" else threads)
            torch.manual_seed(0)
            context = torch.autocast("cpu", dtype=torch.bfloat16) if lever == "amp" else nullcontext()
            started = time.perf_counter()
            with context:
                values[lever] = work(models[lever], x, y)
            if repeat:
                seconds[lever].append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    return {lever: statistics.median(times) for lever, times in seconds.items()}, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training run dir or its model.pt")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--ig-steps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="steps of the attack on explanations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("outputs/cpu_levers"))
    args = parser.parse_args()
    if args.images < 1 or args.repeats < 1:
        parser.error(f"--images {args.images} --repeats {args.repeats}: give 1 or more of each")
    try:
        model, splits, payload = restore_checkpoint(args.checkpoint)
    except AttrobustError as error:
        parser.error(f"--checkpoint {args.checkpoint}: {error}")
    threat = checkpoint_threat(payload)
    if threat is None:
        parser.error(f"--checkpoint {args.checkpoint}: it records no threat model")
    model = model.eval()
    x, y = splits.test.batch(slice(0, args.images), torch.device("cpu"))
    threads = torch.get_num_threads()
    rows = []
    for name, work in workloads(threat, args.ig_steps, args.steps).items():
        levers = tuple(lever for lever in LEVERS if not (lever == "compile" and name != "PGD"))
        medians, values = run(levers, work, model, x, y, args.repeats, threads)
        for lever in levers:
            rows.append({"workload": name, "lever": lever, "median_s": medians[lever],
                         "on / off": medians[lever] / medians["plain"],
                         **{f"max diff {key}": (values[lever][key] - values["plain"][key]).abs().max().item()
                            for key in values[lever]}})
    table = pd.DataFrame(rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    about = (f"{args.images} test images of {args.checkpoint}, IG {args.ig_steps} points, {args.steps} attack steps, "
             f"medians of {args.repeats} after a warm-up round; commit {commit}, "
             f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "cpu_levers.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(args.out / "cpu_levers.md", f"{about}\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n")
    print((args.out / "cpu_levers.md").read_text())


if __name__ == "__main__":
    main()
