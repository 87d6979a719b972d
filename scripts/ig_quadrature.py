"""IG's completeness error against its number of path points, for every quadrature rule, beside Captum's.

Completeness: sum_i IG_i(x) = f(x) - f(0) for the exact integral; a quadrature rule with m points misses it by its
error. For each rule and m, on the first N test images of a trained model (the logit of its predicted class, float64
so that the error is the rule's and not rounding), the relative error |sum_i IG_i - (f(x) - f(0))| / |f(x) - f(0)|:
its median and maximum over the images, for attrobust's IG and for Captum's `IntegratedGradients` with the same
method in the same run.

    python scripts/ig_quadrature.py --checkpoint outputs/train/<run> --images 100 --out outputs/ig_quadrature

Writes `completeness.csv`, `completeness.md` and `completeness.png` (error against points, log axes) to --out.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
from pathlib import Path

import pandas as pd
import torch

from attrobust.atomic import write_text_atomic
from attrobust.attributions import RULES, integrated_gradients, logit_of
from attrobust.errors import AttrobustError
from attrobust.trained import restore_checkpoint

POINTS = (4, 8, 16, 32, 64, 128, 256)


def relative_errors(attributions: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    return (attributions.flatten(1).sum(1) - gap).abs() / gap.abs()


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, points: tuple[int, ...]) -> pd.DataFrame:
    from captum.attr import IntegratedGradients

    fn = logit_of(model, y)
    with torch.no_grad():
        gap = fn(x) - fn(torch.zeros_like(x))
    rows = []
    for rule in RULES:
        for m in points:
            if rule == "riemann_trapezoid" and m < 2:
                continue
            ours = relative_errors(integrated_gradients(fn, x, steps=m, rule=rule), gap)
            theirs = relative_errors(IntegratedGradients(model).attribute(
                x, baselines=torch.zeros_like(x), target=y, n_steps=m, method=rule, internal_batch_size=len(x) * m),
                gap)
            for tool, errors in (("attrobust", ours), ("captum", theirs)):
                rows.append({"rule": rule, "points": m, "tool": tool, "median_error": errors.median().item(),
                             "max_error": errors.max().item()})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for rule, group in table[table["tool"] == "attrobust"].groupby("rule", sort=False):
        axis.loglog(group["points"], group["median_error"], marker="o", label=rule)
    axis.set_xlabel("IG path points (passes per image)")
    axis.set_ylabel("median relative completeness error")
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training run dir or its model.pt")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("outputs/ig_quadrature"))
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images {args.images}: give 1 or more test images")
    try:
        model, splits, payload = restore_checkpoint(args.checkpoint)
    except AttrobustError as error:
        parser.error(f"--checkpoint {args.checkpoint}: {error}")
    model = model.double().eval()
    x, _ = splits.test.batch(slice(0, args.images), torch.device("cpu"))
    x = x.double()
    with torch.no_grad():
        y = model(x).argmax(1)
    table = measure(model, x, y, POINTS)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "completeness.csv", table.to_csv(index=False, float_format="%.6g"))
    wide = table.pivot_table(index=["rule", "points"], columns="tool", values=["median_error", "max_error"],
                             sort=False)
    wide.columns = [f"{value} ({tool})" for value, tool in wide.columns]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    about = (f"{payload['model_cfg']['name']} from {args.checkpoint}, {args.images} test images, float64; commit "
             f"{commit}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    markdown = wide.reset_index().to_markdown(index=False, floatfmt=".3g")
    write_text_atomic(args.out / "completeness.md", f"{about}\n\n{markdown}\n")
    plot(table, args.out / "completeness.png", about)
    print((args.out / "completeness.md").read_text())


if __name__ == "__main__":
    main()
