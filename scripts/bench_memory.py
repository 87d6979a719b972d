"""Peak memory and time of one training step of a preset (default: IG-NORM on Flower-17, the reference ResNet at
128x128, m = 50 IG points, inner PGD 7 steps with 5 points), on random images of the dataset's shape.

Each (batch, max_points) setting runs in its own process so that the peak is its own: on a GPU the peak of
torch.cuda.max_memory_allocated, on a CPU the growth of the process's peak resident set during the step
(ru_maxrss after minus before). Example (2 CPU cores, about a minute):

    python scripts/bench_memory.py --batch 1 2 --max-points null 25 --recompute false true
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from attrobust.data import DATASETS
from attrobust.models import build_model
from attrobust.optim import OPTIMIZERS
from attrobust.regularizers import REGULARIZERS

sys.path.insert(0, str(Path(__file__).parent))
from bench_training import compose  # noqa: E402

SHAPES = {"flower17": (3, 128, 128), "gtsrb": (3, 32, 32), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}


def one_step(experiment: str, batch: int, max_points: int | None, recompute: bool, device: str) -> dict:
    reg = max((name for name in REGULARIZERS.names() if experiment.endswith("_" + name)), key=len)
    plain = compose(experiment, reg)
    plain["reg"]["max_points"] = max_points
    plain["reg"]["recompute"] = recompute
    spec = DATASETS.build(plain["dataset"])
    shape = SHAPES[plain["dataset"]["name"]]
    torch.manual_seed(0)
    model = build_model(plain["model"], spec, shape, int(spec.num_classes)).to(device)
    optimizer = OPTIMIZERS.build(plain["optim"]).build(model.parameters())
    objective = REGULARIZERS.build(plain["reg"])
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, int(spec.num_classes), (batch,), device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    out = objective(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    seconds = time.perf_counter() - start
    return {"experiment": experiment, "model": plain["model"]["name"], "image": list(shape), "batch": batch,
            "ig_steps": plain["reg"]["ig_steps"], "approx_factor": plain["reg"]["approx_factor"],
            "pgd_steps": plain["reg"]["steps"], "max_points": max_points, "recompute": recompute,
            "device": device,
            "threads": torch.get_num_threads(), "peak_step_memory_mib": round(peak / 2**20, 1),
            "step_seconds": round(seconds, 2), "loss_finite": bool(torch.isfinite(out.loss).item())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="rar_flower17_ig_norm")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--max-points", nargs="+", default=["null"], help="IG points per forward pass; null: all")
    parser.add_argument("--recompute", nargs="+", choices=["false", "true"], default=["false"],
                        help="reg.recompute: rebuild each pass's graph in backward (memory bounded by max points)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="outputs/bench/memory.json")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        points = None if args.max_points[0] == "null" else int(args.max_points[0])
        print(json.dumps(one_step(args.experiment, args.batch[0], points, args.recompute[0] == "true", args.device)))
        return
    rows = []
    for batch in args.batch:
        for points, recompute in itertools.product(args.max_points, args.recompute):
            command = [sys.executable, __file__, "--single", "--experiment", args.experiment, "--batch", str(batch),
                       "--max-points", points, "--recompute", recompute, "--device", args.device]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
