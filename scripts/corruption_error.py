"""Mean corruption error relative to a baseline model (Hendrycks and Dietterich, ICLR 2019): for each corruption c,
CE_c = sum over severities of the model's error / the same sum for the baseline, and mCE the mean of CE_c over the
corruptions, in percent; relative mCE uses each model's errors minus its clean error. Read from the `corruption.csv`
and `accuracy.csv` of `evaluate eval.corruptions=[...]` folders on the same images (paired by image index), with a
paired percentile bootstrap over the images (seeded) for every figure.

    python scripts/corruption_error.py --baseline outputs/.../evaluate/<natural> outputs/.../evaluate/<pgd> ...

Writes `corruption_error.md` and `.csv` to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from attrobust.atomic import write_text_atomic


def read(folder: Path) -> pd.DataFrame:
    """Per image (index): 1 - correct under each <corruption>@<severity>, and `clean` (1 - correct)."""
    corrupted = pd.read_csv(folder / "corruption.csv").set_index("index").drop(columns="label")
    clean = pd.read_csv(folder / "accuracy.csv").set_index("index")["correct"]
    return (1 - corrupted.astype(float)).assign(clean=1 - clean.astype(float))


def errors(frame: pd.DataFrame, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per corruption: the summed error over its severities (and each minus the clean error), for each resample
    (`weights` (resamples, images): how often each image is drawn, over the number of images)."""
    means = weights @ frame.to_numpy()                   # (resamples, columns)
    clean = means[:, list(frame.columns).index("clean")]
    out = {}
    for name in sorted({c.rsplit("@", 1)[0] for c in frame.columns if "@" in c}):
        at = [i for i, c in enumerate(frame.columns) if c.rsplit("@", 1)[0] == name]
        out[name] = means[:, at].sum(axis=1)
        out[name + " (relative)"] = (means[:, at] - clean[:, None]).sum(axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the baseline model's evaluation folder")
    parser.add_argument("folders", type=Path, nargs="+", help="the evaluation folders of the models to compare")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/corruption_error"))
    args = parser.parse_args()
    for folder in [args.baseline, *args.folders]:
        if not (folder / "corruption.csv").is_file():
            parser.error(f"{folder}: no corruption.csv; run attrobust evaluate ... eval.corruptions=[...] there")
    baseline = read(args.baseline)
    rng = np.random.default_rng(args.seed)
    n = len(baseline)
    rows = np.concatenate([np.arange(n)[None], rng.integers(0, n, (args.resamples, n))])  # row 0: the images
    weights = np.zeros((len(rows), n))
    np.add.at(weights, (np.repeat(np.arange(len(rows)), n), rows.ravel()), 1.0 / n)
    base = errors(baseline, weights)
    table = []
    for folder in args.folders:
        model = read(folder).reindex(baseline.index)
        if model.isna().any().any() or list(model.columns) != list(baseline.columns):
            parser.error(f"{folder}: not the baseline's images and corruptions; evaluate both on the same ones")
        ours = errors(model, weights)
        for kind in ("", " (relative)"):
            names = [n for n in ours if n.endswith(" (relative)") == bool(kind)]
            ratios = np.stack([100 * ours[n] / np.where(base[n] == 0, np.nan, base[n]) for n in names])
            for name, ratio in [*zip(names, ratios), ("mCE" + kind, np.nanmean(ratios, axis=0))]:
                low, high = np.nanpercentile(ratio[1:], [2.5, 97.5])
                table.append({"model": str(folder), "corruption": name, "CE (%)": ratio[0], "low": low,
                              "high": high, "n": len(baseline)})
    frame = pd.DataFrame(table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "corruption_error.csv", frame.to_csv(index=False, float_format="%.4g"))
    text = f"baseline: {args.baseline}; paired bootstrap over {len(baseline)} images, {args.resamples} resamples\n\n"
    write_text_atomic(args.out / "corruption_error.md", text + frame.to_markdown(index=False, floatfmt=".1f") + "\n")
    print((args.out / "corruption_error.md").read_text())


if __name__ == "__main__":
    main()
