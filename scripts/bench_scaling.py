"""Throughput curves to choose settings: attack and training images per second against batch size and IG steps (m).

- attack: the top-k attribution attack (a few steps) on B images with m IG points, B x m swept;
- training: one IG-NORM step at batch B with m outer points (approx_factor 5, inner PGD 2 steps), B x m swept.
Medians after a warm-up, on a model trained by attrobust or an untrained one of the same architecture. Writes CSV
and a PNG (two panels per workload: against B for each m, against m for each B). Example (2 CPU cores, ~3 min):

    python scripts/bench_scaling.py --checkpoint outputs/train/<run> --batches 1 2 4 8 --ig-steps 10 25 50 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attributions import load, median_time  # noqa: E402

from attrobust.attacks import ATTRIBUTION_ATTACKS  # noqa: E402
from attrobust.explainers import EXPLAINERS  # noqa: E402
from attrobust.regularizers import REGULARIZERS  # noqa: E402


def attack_throughput(model, x, y, batch: int, ig_steps: int, steps: int, repeats: int, device) -> float:
    attack = ATTRIBUTION_ATTACKS.build({"name": "topk", "eps": 0.3, "steps": steps, "step_size": 0.01, "k": 200,
                                        "eval_k": 100, "restarts": 1,
                                        "skip_converged": False},  # the cost of B images, whichever converge
                                       explainer=EXPLAINERS.build({"name": "ig", "steps": ig_steps}))
    seconds = median_time(lambda: attack.run(model, x[:batch], y[:batch]), repeats, device=device)
    return batch / seconds


def training_throughput(model, x, y, batch: int, ig_steps: int, repeats: int, device) -> float:
    objective = REGULARIZERS.build({"name": "ig_norm", "eps": 0.3, "steps": 2, "step_size": 0.1,
                                    "ig_steps": ig_steps, "approx_factor": 5, "eps_warmup_epochs": 0})
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        objective(model, x[:batch], y[:batch]).loss.backward()

    seconds = median_time(step, repeats, device=device)
    model.eval()
    return batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a training run dir or .pt (default: an untrained model)")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--ig-steps", nargs="+", type=int, default=[10, 25, 50, 100])
    parser.add_argument("--attack-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="outputs/bench/scaling")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_args = argparse.Namespace(checkpoint=args.checkpoint, model=args.model, images=max(args.batches))
    model, x, y, model_name = load(load_args, device)
    rows = []
    for ig_steps in args.ig_steps:
        for batch in args.batches:
            rows.append({"workload": "attack", "batch": batch, "ig_steps": ig_steps,
                         "images_per_s": attack_throughput(model, x, y, batch, ig_steps, args.attack_steps,
                                                           args.repeats, device)})
            rows.append({"workload": "ig_norm training step", "batch": batch, "ig_steps": ig_steps,
                         "images_per_s": training_throughput(model, x, y, batch, ig_steps, args.repeats, device)})
            print(rows[-2], rows[-1], flush=True)
    table = pd.DataFrame(rows).assign(device=str(device), threads=torch.get_num_threads(), model=model_name)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output.with_suffix(".csv"), index=False)
    plot(table, output.with_suffix(".png"), f"{model_name} on {device} ({torch.get_num_threads()} threads)")
    print(f"wrote {output.with_suffix('.csv')} and {output.with_suffix('.png')}")


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(table["workload"].unique())
    figure, axes = plt.subplots(len(workloads), 2, figsize=(10, 3.4 * len(workloads)), squeeze=False)
    for row, workload in enumerate(workloads):
        part = table[table["workload"] == workload]
        for m, lines in part.groupby("ig_steps"):
            axes[row][0].plot(lines["batch"], lines["images_per_s"], marker="o", label=f"m={m}")
        for b, lines in part.groupby("batch"):
            axes[row][1].plot(lines["ig_steps"], lines["images_per_s"], marker="o", label=f"B={b}")
        for axis, xlabel in zip(axes[row], ("batch size B", "IG steps m"), strict=True):
            axis.set_xlabel(xlabel)
            axis.set_ylabel("images / s")
            axis.set_title(workload)
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
