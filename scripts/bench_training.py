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
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from bench_attributions import median_time  # noqa: E402

from attrobust.config import config_dir, register_resolvers, to_plain
from attrobust.data import DATASETS
from attrobust.models import build_model
from attrobust.optim import OPTIMIZERS
from attrobust.regularizers import REGULARIZERS

# (label, reg): label names the mnist_mini_<label> preset of the `mini` settings (input_grad has none: natural's)
METHODS = (("natural", "natural"), ("pgd", "pgd"), ("input_grad", "input_grad"), ("ig_norm", "ig_norm"),
           ("ig_sum_norm", "ig_sum_norm"), ("erar", "erar"), ("lga", "attribution_distance"),
           ("advaat", "attribution_distance"), ("igr", "attribution_distance"), ("art", "art"), ("r2et", "r2et"))
REFERENCE_SETTINGS = ("natural", "pgd", "input_grad", "ig_norm", "ig_sum_norm", "erar")


def compose(experiment: str | None, reg: str) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    overrides = [f"reg={reg}"] + ([f"+experiment={experiment}"] if experiment else [])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return to_plain(hydra_compose(config_name="train", overrides=overrides))


def pass_count(reg: dict) -> float:
    """Batch-sized forward + backward pairs one step of `reg` needs at least, in natural steps (natural = 1).

    PGD-k: k input-gradient steps + the outer step. input_grad: the double backward costs one more pair. IG terms
    with p points and create_graph: p pairs for the gradients and p more to differentiate through them, so an IG-NORM
    step is 2 p k (inner, p = m / approx_factor) + 2 m (outer) + 1 (clean CE); IG-SUM-NORM adds the CE at each
    inner iterate (k) and takes the outer CE at x* (1).
    """
    name = reg["name"]
    if name == "natural":
        return 1.0
    if name == "pgd":
        return reg["steps"] + 1.0
    if name == "input_grad":
        return 2.0
    if name == "attribution_distance":
        return distance_pass_count(reg)
    if name == "art":  # the mask's gradient, then per step two logit gradients kept and differentiated; outer: CE
        return 1 + 4.0 * reg["steps"] + 1 + 8  # at x_adv, and both gradients of the 2B copies, differentiated
    if name == "r2et":  # the CE gradient kept and differentiated, and the same at the shifted point
        return 2.0 + (2 if reg["weight"] and reg["curvature_weight"] else 0)
    inner_points = reg["ig_steps"] // reg["approx_factor"]
    if name == "erar":
        return 2 * inner_points * reg["steps"] + reg["steps"] + 8 * reg["ig_steps"] + 1.0
    base = 2 * inner_points * reg["steps"] + 2 * reg["ig_steps"] + 1.0
    return base + reg["steps"] if name == "ig_sum_norm" else base


def distance_pass_count(reg: dict) -> float:
    """attribution_distance with an explainer of P points (gradient: 1, IG / SmoothGrad: its steps): a map kept for
    second order is P pairs and differentiating through it P more; PGD on D costs 2 P per step; the outer loss
    differentiates both maps (the clean one only computed when it is detached) and the CE."""
    points = 1 if reg["explainer"] in ("gradient", "grad_x_input") else reg["explainer_steps"] or 1
    inner = 2 * points * reg["steps"] if reg["inner"] == "pgd" else 0
    clean = points if reg["detach_clean_map"] else 2 * points
    return inner + clean + 2 * points + 1.0


def training_rows(settings: str, batch: int, steps: int, device: torch.device) -> list[dict]:
    """One step of every regulariser on the same batch: seconds, ratio to natural and to the pass-count bound."""
    rows = []
    for label, method in METHODS:
        preset = f"mnist_mini_{label}" if settings == "mini" and label != "input_grad" else None
        if settings == "reference" and label not in REFERENCE_SETTINGS:
            continue  # the later methods have mnist_mini presets only
        plain = compose(preset, method)
        if settings == "mini" and label == "input_grad":
            plain = {**compose("mnist_mini_natural", "natural"), "reg": plain["reg"]}
        if settings == "reference":
            plain["model"] = OmegaConf.to_container(OmegaConf.load(config_dir() / "model/madry_cnn.yaml"))
        spec = DATASETS.build(plain["dataset"])
        splits = spec.load()
        data = splits.train
        torch.manual_seed(0)
        model = build_model(plain["model"], spec, tuple(data.images.shape[1:]), splits.num_classes).to(device)
        optimizer = OPTIMIZERS.build(plain["optim"]).build(model.parameters())
        objective = REGULARIZERS.build(plain["reg"])
        x, y = data.batch(slice(0, batch), device)

        def step(model=model, objective=objective, optimizer=optimizer, x=x, y=y) -> None:
            out = objective(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

        seconds = median_time(step, steps, device=device)  # objective + backward + optimizer step
        reg = plain["reg"]
        detail = ", ".join(f"{k}={reg[k]}" for k in ("steps", "ig_steps", "approx_factor", "weight") if k in reg)
        rows.append({"method": label, "model": plain["model"]["name"], "step_s": seconds, "settings": detail,
                     "passes": pass_count(reg)})
    natural = rows[0]["step_s"]
    for row in rows:
        row["vs_natural"] = row["step_s"] / natural
        row["vs_pass_bound"] = row["step_s"] / (natural * row["passes"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", choices=("mini", "reference"), default="mini")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="outputs/bench/training.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = training_rows(args.settings, args.batch, args.steps, device)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "batch": args.batch, "settings": args.settings}
    print(json.dumps(meta))
    for row in rows:
        print(f"{row['method']:<12} {row['model']:<10} {row['step_s'] * 1e3:9.1f} ms  {row['vs_natural']:7.1f}x natural"
              f"  {row['vs_pass_bound']:5.2f}x its {row['passes']:g}-pass bound  {row['settings']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
