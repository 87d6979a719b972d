"""attrobust against its peers, in one run on the same model, data and settings: one table of times and ratios.

1. IG vs captum.attr.IntegratedGradients (riemann_right, same steps, best internal_batch_size), max abs difference;
2. the batched top-k attack vs a one-image-at-a-time loop of the same algorithm, and vs its pass-count bound; then
   with skip_converged (the default: images at a fixed point of the attack are dropped) vs the same loop;
3. Kendall / Spearman vs scipy loops on the same maps (max abs difference) and the metrics' share of attack time;
   every other explainer (gradient, grad_x_input, smoothgrad, gradcam) vs its Captum counterpart at its best settings;
4. one training step of natural, pgd, input_grad, ig_norm, ig_sum_norm: ratio to natural and to its pass-count
   lower bound (natural step time x the forward/backward pairs the objective needs);
5. our PGD vs torchattacks' PGD (same eps, steps, step size, random start) when torchattacks is installed;
6. each stability metric vs Quantus's on the same draws (scripts/bench_stability.py) when quantus is installed;
7. the deletion curve vs RISE's one-image loop and Quantus's PixelFlipping on the same maps
   (scripts/bench_faithfulness.py).
Medians after warm-up runs. Prints the table and writes it as CSV and JSON (with the device, threads, dtype and
versions). Example (about five minutes on 2 CPU cores):

    python scripts/bench.py --images 8 --attack-steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attributions import add_arguments, attribution_rows, load, median_time  # noqa: E402
from bench_faithfulness import add_faithfulness_arguments, faithfulness_rows  # noqa: E402
from bench_stability import add_stability_arguments, stability_rows  # noqa: E402
from bench_training import training_rows  # noqa: E402

from attrobust.attacks import PREDICTION_ATTACKS  # noqa: E402


def pgd_rows(args: argparse.Namespace) -> list[dict]:
    try:
        import torchattacks
    except ImportError:
        return [{"task": "PGD vs torchattacks", "note": "torchattacks not installed (pip install torchattacks)"}]
    device = torch.device(args.device)
    args_pgd = argparse.Namespace(**{**vars(args), "images": args.pgd_images})
    model, x, y, _ = load(args_pgd, device)
    ours = PREDICTION_ATTACKS.build({"name": "pgd", "eps": 0.3, "steps": 40, "step_size": 0.01, "random_start": True})
    theirs = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=40, random_start=True)
    t_ours = median_time(lambda: ours.perturb(model, x, y), args.repeats, device=device)
    t_theirs = median_time(lambda: theirs(x, y), args.repeats, device=device)
    adversarial = {"ours": ours.perturb(model, x, y), "theirs": theirs(x, y)}  # attacks need gradients
    with torch.no_grad():
        acc_ours, acc_theirs = ((model(adversarial[k]).argmax(1) == y).float().mean().item() for k in adversarial)
    return [{"task": f"PGD-40 x 0.01 eps 0.3, {len(y)} images", "ours_s": t_ours, "peer": "torchattacks.PGD",
             "peer_s": t_theirs, "speedup": t_theirs / t_ours,
             "note": f"accuracy under attack {100 * acc_ours:.1f}% (ours) vs {100 * acc_theirs:.1f}%"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--train-settings", choices=("mini", "reference"), default="mini")
    parser.add_argument("--train-batch", type=int, default=50)
    parser.add_argument("--pgd-images", type=int, default=200)
    parser.add_argument("--output", default="outputs/bench/bench")
    add_stability_arguments(parser)
    add_faithfulness_arguments(parser)
    args = parser.parse_args()
    meta, rows = attribution_rows(args)
    for row in training_rows(args.train_settings, args.train_batch, args.repeats, torch.device(args.device)):
        rows.append({"task": f"train step {row['method']} ({row['model']}, batch {args.train_batch})",
                     "ours_s": row["step_s"], "peer": "natural step", "peer_s": row["step_s"] / row["vs_natural"],
                     "speedup": 1 / row["vs_natural"],
                     "note": f"{row['vs_pass_bound']:.2f}x its {row['passes']:g}-pass bound; {row['settings']}"})
    rows += pgd_rows(args)
    rows += stability_rows(args)
    rows += faithfulness_rows(args)
    meta.update(train_settings=args.train_settings, train_batch=args.train_batch, numpy=__import__("numpy").__version__,
                platform=platform.platform())
    table = pd.DataFrame(rows)
    print(json.dumps(meta))
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output.with_suffix(".csv"), index=False)
    output.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    print(f"wrote {output.with_suffix('.csv')} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
