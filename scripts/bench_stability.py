"""The stability metrics against Quantus on the same work: same model, images, explainer and noise draws (Quantus
replays ours through its `perturb_func`), batched draws x images (ours) vs Quantus's one explainer call per draw.
Prints the seconds of each, the speed-up and the largest relative difference of the values. Example:

    python scripts/bench_stability.py --images 16 --samples 50
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

from attrobust.engine.stability import rows_per_call  # noqa: E402
from attrobust.explainers import EXPLAINERS  # noqa: E402
from attrobust.stability import STABILITY, estimate  # noqa: E402
from attrobust.stability.base import image_seed  # noqa: E402

QUANTUS_CLASSES = {"max_sensitivity": "MaxSensitivity", "avg_sensitivity": "AvgSensitivity",
                   "local_lipschitz": "LocalLipschitzEstimate", "relative_input_stability": "RelativeInputStability",
                   "relative_output_stability": "RelativeOutputStability"}


def stability_rows(args: argparse.Namespace) -> list[dict]:
    try:
        import quantus
    except ImportError:
        return [{"task": "stability vs Quantus", "note": "quantus not installed (pip install quantus)"}]
    device = torch.device(args.device)
    model, x, y, model_name = load(argparse.Namespace(**{**vars(args), "images": args.stability_images}), device)
    explainer = EXPLAINERS.build({"name": args.stability_explainer})
    ids = list(range(len(x)))
    rows = []
    for name, quantus_class in QUANTUS_CLASSES.items():
        metric = STABILITY.build({"name": name, "samples": args.samples})
        noise = torch.stack([metric.draw_noise((args.samples, *x.shape[1:]),
                                               torch.Generator().manual_seed(image_seed(0, i))) for i in ids], 1)
        noise = noise.flatten(2).numpy()

        def ours(metric=metric):
            return estimate(metric, model, explainer, x, y, ids, 0, rows_per_call(device, explainer)).values

        def theirs(noise=noise, quantus_class=quantus_class, name=name):
            steps = iter(noise)

            def replay(arr, indices=None, indexed_axes=None, **unused):
                return arr + next(steps).reshape(arr.shape)

            def explain(model, inputs, targets, **unused):
                inputs = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
                targets = torch.as_tensor(np.asarray(targets), device=device)
                return explainer.explain(model, inputs, targets).detach().cpu().numpy()

            settings = {"normalise": False} if name == "local_lipschitz" else {}
            oracle = getattr(quantus, quantus_class)(nr_samples=args.samples, perturb_func=replay,
                                                     disable_warnings=True, **settings)
            return np.asarray(oracle(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(), a_batch=None,
                                     explain_func=explain, explain_func_kwargs={}, channel_first=True,
                                     softmax=False, device=str(device), batch_size=len(x)), dtype=np.float64)

        t_ours = median_time(ours, args.repeats, device=device)
        t_theirs = median_time(theirs, args.repeats, device=device)
        a, b = ours().cpu().numpy(), theirs()
        finite = np.isfinite(a) & np.isfinite(b)
        difference = float(np.max(np.abs(a[finite] - b[finite]) / np.abs(b[finite]))) if finite.any() else 0.0
        rows.append({"task": f"{name} of {explainer.describe()}, {len(x)} images x {args.samples} draws "
                             f"({model_name})", "ours_s": t_ours, "peer": f"quantus.{quantus_class}",
                     "peer_s": t_theirs, "speedup": t_theirs / t_ours,
                     "note": f"max relative difference {difference:.1e}; NaN in the same places: "
                             f"{bool((np.isnan(a) == np.isnan(b)).all())}"})
    return rows


def add_stability_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stability-images", type=int, default=16)
    parser.add_argument("--samples", type=int, default=50, help="draws per image of each stability metric")
    parser.add_argument("--stability-explainer", default="gradient")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    add_stability_arguments(parser)
    args = parser.parse_args()
    rows = stability_rows(args)
    meta = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(json.dumps(meta))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
