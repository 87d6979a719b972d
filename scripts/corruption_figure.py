"""One test image under every registered corruption at each severity (a grid: corruptions down, severities across),
and the compositions given, as the corruption part draws them for that image and seed.

    python scripts/corruption_figure.py --index 0 --seed 0 --out docs/img/corruptions.png

Reads the embedded mnist_mini test split (no download).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attrobust.corruptions import CORRUPTIONS, build_corruptions
from attrobust.data import DATASETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="the test image's index in mnist_mini")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compose", nargs="*", default=["rotate+gaussian_noise", "scale+contrast"],
                        help="compositions to add, each as NAME+NAME[+NAME]")
    parser.add_argument("--out", type=Path, default=Path("docs/img/corruptions.png"))
    args = parser.parse_args()
    test = DATASETS.build({"name": "mnist_mini", "num_classes": 10, "mean": [0.0], "std": [1.0]}).load().test
    if not 0 <= args.index < len(test):
        parser.error(f"--index {args.index}: mnist_mini has test images 0 .. {len(test) - 1}")
    x, _ = test.batch(slice(args.index, args.index + 1), torch.device("cpu"))
    corruptions = [CORRUPTIONS.build({"name": n}) for n in CORRUPTIONS.names() if n != "compose"]
    corruptions += build_corruptions([{"name": "compose", "of": c.split("+")} for c in args.compose], "--compose")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(len(corruptions), 6, figsize=(6 * 1.1, len(corruptions) * 1.1))
    index = test.index[args.index:args.index + 1]
    for row, corruption in zip(axes, corruptions, strict=True):
        row[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
        row[0].set_ylabel(corruption.column, fontsize=7, rotation=0, ha="right", va="center")
        for severity in range(1, 6):
            moved = corruption.corrupt(x, severity, args.seed, index)
            row[severity].imshow(moved[0, 0], cmap="gray", vmin=0, vmax=1)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    for severity, axis in enumerate(axes[0]):
        axis.set_title("clean" if severity == 0 else f"severity {severity}", fontsize=7)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
