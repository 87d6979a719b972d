"""Where the attack on explanations gets its strength: final IN / Kendall / LENS recall against the passes spent.

From the `robust` protocol's attack (the threat model's steps and step size, IG scored with the threat's points, a
random start, 3 restarts), one cost knob at a time is turned down on the same images of each model, for each
explainer: the explainer passes of the direction (`direction_points`) and of the maps that select the kept iterate
(`selection_points`), steps (with step_size x steps kept, so the path can reach as far), restarts, `patience`, the
random start, and the chunk size (seconds only). `--extra` adds combinations, `--protocols fast` the base as that
`eval.protocol` runs it (`--no-grid`: only those beside the base). The variants take turns on each block
of images, with the same random starts. Passes are counted, not estimated: every row the network sees (a path point,
a noise sample, a label check) is one pass; a direction pass also goes through a second-order backward, so seconds
are given beside them.

    python scripts/attack_frontier.py --checkpoints outputs/train/natural outputs/train/pgd --images 50 \\
        --explainers ig smoothgrad --extra "fast:restarts=1,steps=20,step_size=0.05,direction_points=10"

Writes to --out: `per_image.csv` (every image's measures under every variant), `frontier.csv` and `frontier.md`
(per model, explainer and variant: passes and seconds per image, each measure's mean with its 95 % bootstrap
interval over the images, whether the mean lies in the base's interval, and the interval of the paired difference to
the base over the same images; the .md shows the base's interval and the others' paired difference) and
`frontier.png` (measure against passes per image, log axis). Only correctly classified images are attacked, as
in `evaluate`.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from attrobust.atomic import write_text_atomic
from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.engine.attribution import auto_batch_size, score
from attrobust.engine.protocol import PROTOCOLS, protocol_named
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.metrics import build_metrics
from attrobust.reporting.intervals import Bootstrap
from attrobust.trained import checkpoint_threat, restore_checkpoint

METRICS = build_metrics(["topk_intersection", "kendall", "lens_recall"])
EXPLAINER_SETTINGS = {"ig": {"name": "ig"}, "smoothgrad": {"name": "smoothgrad", "wraps": "gradient"},
                      "gradient": {"name": "gradient"}}


class RowCounter(nn.Module):
    """The model, counting the rows (images, path points, noise samples) of its forward passes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def variants(base: dict[str, Any], passes: int, extra: list[str], quick: bool = False
             ) -> list[tuple[str, str, dict[str, Any]]]:
    """(knob, value, attack settings): the base, then one knob turned down at a time, then `extra`; `quick`: two
    values per knob and no chunk-size variant."""
    return [("base", "robust", base), *grid(base, passes, quick), *extras(base, extra)]


def grid(base: dict[str, Any], passes: int, quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    reach = base["steps"] * base["step_size"]
    out = []
    out += [("direction_points", str(p), {**base, "direction_points": p})
            for p in sorted({max(1, passes // d) for d in ((5, 20) if quick else (2, 5, 10, 20))}, reverse=True)
            if p < passes]
    out += [("selection_points", str(p), {**base, "selection_points": p})
            for p in sorted({max(1, passes // d) for d in ((5, 20) if quick else (2, 5, 10, 20))}, reverse=True)
            if p < passes]
    out += [("steps", f"{s}x{reach / s:.3g}", {**base, "steps": s, "step_size": reach / s})
            for s in ((50, 20) if quick else (50, 20, 10)) if s < base["steps"]]
    out += [("restarts", str(r), {**base, "restarts": r}) for r in (2, 1)]
    out += [("patience", str(p), {**base, "patience": p}) for p in ((10, 3) if quick else (20, 10, 5, 2))
            if p < base["steps"]]
    out += [("random_start", "false", {**base, "random_start": False})]
    out += [] if quick else [("chunk", "4", {**base, "chunk": 4})]
    return out


def extras(base: dict[str, Any], extra: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [("extra", name, {**base, **parse_settings(settings)})
            for name, _, settings in (spec.partition(":") for spec in extra)]


def protocols(base: dict[str, Any], explainer: Any, names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The base attack as each named `eval.protocol` runs it (engine/protocol.py)."""
    attack = ATTRIBUTION_ATTACKS.build({"name": "topk", **base}, explainer=explainer)
    return [("protocol", name, {**base, **protocol_named(name).changes(attack)}) for name in names]


def parse_settings(text: str) -> dict[str, Any]:
    """"key=value,key=value" as attack settings."""
    return {key: _value(value) for key, value in (item.split("=", 1) for item in text.split(",") if item)}


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def attack_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, explainer: Any,
                  variants: list[tuple[str, str, dict[str, Any]]], seed: int) -> list[dict[str, Any]]:
    """Per variant: per-image measures of its attack on (x, y), the network rows it spent and its seconds. The
    variants take turns on each block of images (one chunk of the explainer's auto size), so that a slow spell of
    the machine hits them all alike, and every variant draws the same random starts for a block."""
    block = auto_batch_size(x.device, explainer.passes_per_image)
    out = [{"values": {m.column: [] for m in METRICS}, "rows": 0, "seconds": 0.0} for _ in variants]
    for turn, start in enumerate(range(0, len(y), block)):
        xb, yb = x[start:start + block], y[start:start + block]
        order = [(turn + i) % len(variants) for i in range(len(variants))]  # each block starts with another one
        for (_, _, settings), tally in ((variants[i], out[i]) for i in order):
            settings = dict(settings)
            chunk = settings.pop("chunk", None) or block
            attack = ATTRIBUTION_ATTACKS.build({"name": "topk", **settings}, explainer=explainer)
            counter = RowCounter(model).eval()
            torch.manual_seed(seed + start)  # the block's random starts, as evaluate seeds each chunk
            started = time.perf_counter()
            for first in range(0, len(yb), chunk):
                result = attack.run(counter, xb[first:first + chunk], yb[first:first + chunk])
                for column, value in score(result, METRICS, attack.eval_k).items():
                    tally["values"][column].append(value.double())
            tally["seconds"] += time.perf_counter() - started
            tally["rows"] += counter.rows
    for tally in out:
        tally["values"] = {column: torch.cat(parts) for column, parts in tally["values"].items()}
    return out


def summarise(per_image: pd.DataFrame, bootstrap: Bootstrap) -> pd.DataFrame:
    rows = []
    keys = ["model", "explainer", "knob", "value"]
    for key, group in per_image.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        row.update(images=len(group), passes_per_image=group["passes_per_image"].iloc[0],
                   seconds_per_image=group["seconds_per_image"].iloc[0])
        for metric in METRICS:
            values = group[metric.column] * metric.scale
            low, high = bootstrap.interval(values)
            row.update({metric.title: values.mean(), f"{metric.title} low": low, f"{metric.title} high": high})
        rows.append(row)
    table = pd.DataFrame(rows)
    base = table[table["knob"] == "base"].set_index(["model", "explainer"])
    keys = list(zip(table["model"], table["explainer"], strict=True))

    def of_base(column: str) -> pd.Series:
        return pd.Series([base.loc[key, column] for key in keys], index=table.index)

    for metric in METRICS:
        title = metric.title
        table[f"{title} in base CI"] = ((table[title] >= of_base(f"{title} low"))
                                        & (table[title] <= of_base(f"{title} high")))
        table[[f"{title} diff low", f"{title} diff high"]] = [paired(per_image, row, metric, bootstrap)
                                                              for row in table.itertuples()]
    table["passes vs base"] = table["passes_per_image"] / of_base("passes_per_image")
    return table


def paired(per_image: pd.DataFrame, row: Any, metric: Any, bootstrap: Bootstrap) -> tuple[float, float]:
    """The interval of the variant's mean difference to the base over the same images (per image, then resampled)."""
    same = (per_image["model"] == row.model) & (per_image["explainer"] == row.explainer)
    variant = per_image[same & (per_image["knob"] == row.knob) & (per_image["value"] == row.value)]
    base = per_image[same & (per_image["knob"] == "base")]
    differences = variant.set_index("index")[metric.column] - base.set_index("index")[metric.column]
    return bootstrap.interval(differences.to_numpy(), scale=metric.scale)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """frontier.md's view: per variant its passes (and their ratio to the base's) and seconds per image; per measure
    the base's mean [95 % interval] and every other variant's mean with the interval of its paired difference to the
    base, e.g. `61.2 (+0.7, +4.2)`: weaker than the base on these images when both ends are above 0 for a measure
    that the attack lowers."""
    shown = table[["model", "explainer", "knob", "value", "images"]].copy()
    shown["passes per image"] = [f"{p:,.0f} ({r:.2f})" for p, r in zip(table["passes_per_image"],
                                                                      table["passes vs base"], strict=True)]
    shown["s per image"] = table["seconds_per_image"].map(lambda s: f"{s:.3g}")
    for metric in METRICS:
        name, digits = metric.title, 3
        shown[name] = [f"{r[name]:.{digits}g} [{r[name + ' low']:.{digits}g}, {r[name + ' high']:.{digits}g}]"
                       if r["knob"] == "base" else
                       f"{r[name]:.{digits}g} ({signed(r[name + ' diff low'])}, {signed(r[name + ' diff high'])})"
                       for _, r in table.iterrows()]
    return shown


def signed(value: float) -> str:
    return f"{0.0 if abs(value) < 1e-12 else value:+.2g}"  # a bootstrap end at 0 up to rounding shows as +0


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    models = list(dict.fromkeys(table["model"]))
    figure, axes = plt.subplots(len(METRICS), len(models), figsize=(5.5 * len(models), 3.2 * len(METRICS)),
                                squeeze=False)
    markers = dict(zip(dict.fromkeys(table["explainer"]), "osD^", strict=False))
    knobs = [knob for knob in dict.fromkeys(table["knob"]) if knob != "base"]
    colours = dict(zip(knobs, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False)) | {"base": "black"}
    for column, model in enumerate(models):
        for row, metric in enumerate(METRICS):
            axis = axes[row][column]
            for (explainer, knob), group in table[table["model"] == model].groupby(["explainer", "knob"], sort=False):
                axis.scatter(group["passes_per_image"], group[metric.title], marker=markers[explainer],
                             color=colours[knob], s=60 if knob == "base" else 28, zorder=3 if knob == "base" else 2)
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.set_xlabel("network passes per image (log)")
            axis.set_ylabel(f"{metric.title}{' (%)' if metric.unit == '%' else ''}")
            axis.set_title(model, fontsize=9)
            axis.grid(True, which="both", alpha=0.3)
    legend = [Line2D([], [], color=colours[k], marker="o", linestyle="", label=k) for k in ["base", *knobs]]
    legend += [Line2D([], [], color="grey", marker=m, linestyle="", label=e) for e, m in markers.items()]
    figure.legend(handles=legend, fontsize=7, loc="lower center", ncol=min(5, len(legend)))
    figure.suptitle(title, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 0.96))
    figure.savefig(path, dpi=110)


def run_model(checkpoint: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    model, splits, payload = restore_checkpoint(checkpoint)
    model = model.eval()
    threat = checkpoint_threat(payload)
    if threat is None:
        raise AttrobustError(f"{checkpoint} records no threat model to take the attack's settings from")
    attack = threat["attribution_attack"]
    base = {"eps": float(threat["eps"]), "steps": int(attack["steps"]), "step_size": float(attack["step_size"]),
            "k": attack["k"], "eval_k": attack["eval_k"], "restarts": 3, "random_start": True,
            **parse_settings(args.base)}
    x, y = splits.test.batch(slice(0, args.images), torch.device("cpu"))
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).nonzero().flatten()
    path = Path(checkpoint)
    x, y, label = x[correct], y[correct], (path.parent if path.suffix == ".pt" else path).name
    rows = []
    for name in args.explainers:
        settings = dict(EXPLAINER_SETTINGS[name])
        if name == "ig":
            settings["steps"] = args.ig_steps or int(attack["ig_steps"])
        explainer = EXPLAINERS.build(settings)
        chosen = (variants(base, explainer.passes_per_image, args.extra, args.quick) if args.grid else
                  [("base", "robust", base), *extras(base, args.extra)]) + protocols(base, explainer, args.protocols)
        for (knob, value, _), tally in zip(chosen, attack_images(model, x, y, explainer, chosen, args.seed),
                                           strict=True):
            measures, passes, seconds = tally["values"], tally["rows"], tally["seconds"]
            print(f"{label} {explainer.describe()} {knob}={value}: {passes / len(y):.0f} passes, "
                  f"{seconds / len(y):.2f} s per image, " + ", ".join(
                      f"{m.title} {m.scale * measures[m.column].mean().item():.4g}" for m in METRICS), flush=True)
            for i in range(len(y)):
                rows.append({"model": label, "explainer": explainer.describe(), "knob": knob, "value": value,
                             "index": int(correct[i]), "passes_per_image": passes / len(y),
                             "seconds_per_image": seconds / len(y),
                             **{column: float(values[i]) for column, values in measures.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="training run dirs (or their model.pt)")
    parser.add_argument("--images", type=int, default=50, help="the first N test images (correct ones attacked)")
    parser.add_argument("--explainers", nargs="+", default=["ig", "smoothgrad"], choices=sorted(EXPLAINER_SETTINGS))
    parser.add_argument("--extra", nargs="*", default=[], help='"name:key=value,..." attack settings to add')
    parser.add_argument("--base", default="", help='"key=value,..." changes to the base attack (smoke runs)')
    parser.add_argument("--ig-steps", type=int, default=None, help="IG points (default: the threat model's)")
    parser.add_argument("--quick", action="store_true", help="two values per knob, no chunk-size variant")
    parser.add_argument("--no-grid", dest="grid", action="store_false", help="no knob grid: base, extras, protocols")
    parser.add_argument("--protocols", nargs="*", default=[], choices=sorted(PROTOCOLS),
                        help="add the base attack as these eval.protocol run it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/attack_frontier"))
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images {args.images}: give 1 or more test images")
    torch.set_grad_enabled(True)
    rows = []
    labels = [(Path(c).parent if Path(c).suffix == ".pt" else Path(c)).name for c in args.checkpoints]
    if len(set(labels)) < len(labels):
        parser.error(f"--checkpoints: two runs have the same folder name ({', '.join(labels)}); give distinct ones")
    for checkpoint in args.checkpoints:
        try:
            rows += run_model(checkpoint, args)
        except AttrobustError as error:
            parser.error(f"--checkpoints {checkpoint}: {error}")
    per_image = pd.DataFrame(rows)
    table = summarise(per_image, Bootstrap(seed=args.seed))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    about = (f"top-k attack, first {args.images} test images (correct ones attacked), commit {commit}, "
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "per_image.csv", per_image.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(args.out / "frontier.csv", table.to_csv(index=False, float_format="%.6g"))
    shown = readable(table)
    write_text_atomic(args.out / "frontier.md", f"{about}\n\n{shown.to_markdown(index=False, floatfmt='.4g')}\n")
    plot(table, args.out / "frontier.png", about)
    print((args.out / "frontier.md").read_text())


if __name__ == "__main__":
    main()
