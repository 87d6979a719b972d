"""Deletion curves against Quantus's PixelFlipping and RISE's one-image loop on the same work: same model, images and
maps (the explainer's, computed once). Ours: every (image, point) pair a row of batched forward passes; Quantus: one
forward pass of all images per step; RISE: one pass per image and step. Prints seconds, speed-ups and the largest
difference of the curves. Example:

    python scripts/bench_faithfulness.py --faithfulness-images 64 --faithfulness-steps 28
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attributions import add_arguments, load, median_time  # noqa: E402

from attrobust.engine.faithfulness import ROW_PIXELS  # noqa: E402
from attrobust.explainers import EXPLAINERS  # noqa: E402
from attrobust.faithfulness import FAITHFULNESS, importance  # noqa: E402
from attrobust.faithfulness.base import curves  # noqa: E402


def rise_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attributions: torch.Tensor,
              steps: int) -> np.ndarray:
    """RISE's `single_run` for each image in turn (deletion to 0): one forward pass per image and point."""
    pixels = x.shape[-1] * x.shape[-2]
    step = pixels // steps
    out = np.empty((len(x), steps + 1))
    order = importance(attributions).argsort(dim=1, descending=True, stable=True)
    for i in range(len(x)):
        current = x[i:i + 1].clone().reshape(1, x.shape[1], pixels)
        for k in range(steps + 1):
            with torch.no_grad():
                out[i, k] = float(model(current.view(1, *x.shape[1:])).double().softmax(1)[0, y[i]])
            current[:, :, order[i, step * k:step * (k + 1)]] = 0
    return out


def faithfulness_rows(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    model, x, y, model_name = load(argparse.Namespace(**{**vars(args), "images": args.faithfulness_images}), device)
    explainer = EXPLAINERS.build({"name": "gradient"})
    attributions = explainer.explain(model, x, y).detach()
    pixels = x.shape[-1] * x.shape[-2]
    metric = FAITHFULNESS.build({"name": "deletion", "steps": args.faithfulness_steps, "baseline": "zero"})
    rows_per_pass = max(1, ROW_PIXELS["cuda" if device.type == "cuda" else "cpu"] // x[0].numel())  # as evaluate

    def ours():
        return curves(metric, model, x, y, attributions, rows_per_pass)

    task = f"deletion curve, {len(x)} images x {args.faithfulness_steps + 1} points ({model_name})"
    rows = []
    t_ours = median_time(ours, args.repeats, device=device)
    mine = ours().cpu().numpy()
    t_rise = median_time(lambda: rise_loop(model, x, y, attributions, args.faithfulness_steps), 1, device=device)
    difference = float(np.abs(mine - rise_loop(model, x, y, attributions, args.faithfulness_steps)).max())
    rows.append({"task": task, "ours_s": t_ours, "peer": "RISE one-image loop", "peer_s": t_rise,
                 "speedup": t_rise / t_ours, "note": f"max difference of the curves {difference:.1e}"})
    try:
        import quantus
    except ImportError:
        return [*rows, {"task": "deletion vs Quantus", "note": "quantus not installed (pip install quantus)"}]
    oracle = quantus.PixelFlipping(features_in_step=pixels // args.faithfulness_steps, perturb_baseline="black",
                                   abs=False, normalise=False, disable_warnings=True)

    def theirs():
        return np.asarray(oracle(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                                 a_batch=attributions.cpu().numpy(), softmax=True, device=str(device),
                                 batch_size=len(x)))

    t_theirs = median_time(theirs, args.repeats, device=device)
    difference = float(np.abs(mine[:, 1:] - theirs()).max())
    rows.append({"task": task, "ours_s": t_ours, "peer": "quantus.PixelFlipping", "peer_s": t_theirs,
                 "speedup": t_theirs / t_ours, "note": f"max difference of the curves {difference:.1e} (float32)"})
    return rows


def add_faithfulness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faithfulness-images", type=int, default=64)
    parser.add_argument("--faithfulness-steps", type=int, default=28, help="must divide the image's pixels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    add_faithfulness_arguments(parser)
    args = parser.parse_args()
    print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__}))
    for row in faithfulness_rows(args):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
