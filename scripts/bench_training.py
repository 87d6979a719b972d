"""Benchmark one training step of every regulariser against a natural step, in one run on the same model and batch.

A step is objective(model, x, y) + backward + optimizer step. Settings come from a preset family: `mini` (the
mnist_mini CPU presets: small_cnn, PGD-10, m = 10) or `reference` (Madry CNN, PGD-40, m = 50). Prints medians and the
ratio to natural; writes JSON next to --output. Example (about a minute on 2 CPU cores):

    python scripts/bench_training.py --settings mini --batch 50
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from attrobust.config import config_dir, register_resolvers, to_plain
from attrobust.data import DATASETS
from attrobust.models import build_model
from attrobust.optim import OPTIMIZERS
from attrobust.regularizers import REGULARIZERS

METHODS = ("natural", "pgd", "input_grad", "ig_norm", "ig_sum_norm")


def compose(experiment: str | None, reg: str) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    overrides = [f"reg={reg}"] + ([f"+experiment={experiment}"] if experiment else [])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return to_plain(hydra_compose(config_name="train", overrides=overrides))


def median_step_time(model: torch.nn.Module, objective, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, steps: int, device: torch.device) -> float:
    """Median seconds of objective + backward + optimizer step, after one warm-up step."""
    times = []
    for attempt in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = objective(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", choices=("mini", "reference"), default="mini")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="outputs/bench/training.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for method in METHODS:
        preset = f"mnist_mini_{method}" if args.settings == "mini" and method != "input_grad" else None
        plain = compose(preset, method)
        if args.settings == "mini" and method == "input_grad":
            plain = {**compose("mnist_mini_natural", "natural"), "reg": plain["reg"]}
        if args.settings == "reference":
            plain["model"] = OmegaConf.to_container(OmegaConf.load(config_dir() / "model/madry_cnn.yaml"))
        spec = DATASETS.build(plain["dataset"])
        splits = spec.load()
        data = splits.train
        torch.manual_seed(0)
        model = build_model(plain["model"], spec, tuple(data.images.shape[1:]), splits.num_classes).to(device)
        optimizer = OPTIMIZERS.build(plain["optim"]).build(model.parameters())
        objective = REGULARIZERS.build(plain["reg"])
        x, y = data.batch(slice(0, args.batch), device)
        seconds = median_step_time(model, objective, optimizer, x, y, args.steps, device)
        reg = plain["reg"]
        detail = ", ".join(f"{k}={reg[k]}" for k in ("steps", "ig_steps", "approx_factor", "weight") if k in reg)
        rows.append({"method": method, "model": plain["model"]["name"], "step_s": seconds,
                     "settings": detail})
    natural = rows[0]["step_s"]
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "batch": args.batch, "settings": args.settings}
    print(json.dumps(meta))
    for row in rows:
        row["vs_natural"] = row["step_s"] / natural
        print(f"{row['method']:<12} {row['model']:<10} {row['step_s'] * 1e3:9.1f} ms  {row['vs_natural']:7.1f}x natural"
              f"  {row['settings']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
