"""Figures: the paper's Figure 1 layout (image, perturbed image, original and perturbed saliency) for a few images,
with what the attack aimed at drawn on top: the top-k pixels outlined, the centres of mass (mass_center), the target
region (target), and a colour bar in the maps' unit (saliency normalised to a pixel mean of 1)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from attrobust.atomic import write_bytes_atomic

ORIGINAL_MARK = {"marker": "x", "color": "deepskyblue", "s": 40}
PERTURBED_MARK = {"marker": "+", "color": "lime", "s": 60}


def attribution_figure(examples: dict[str, Any], path: Path, title: str) -> None:
    """One row per example: image, perturbed image, original saliency, perturbed saliency (with the first metrics of
    `eval.metrics` above it, as fractions). Examples from `attrobust.engine.examples.figure_examples`."""
    count = len(examples.get("label", []))
    if count == 0:
        return
    import matplotlib  # imported when a figure is drawn: it takes a third of a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = examples["image"].shape[-2:]
    fig, axes = plt.subplots(count, 4, figsize=(11.5, 2.8 * count + 0.9), squeeze=False)
    for row in range(count):
        maps = [examples[f"{which}_saliency"][row].view(height, width) for which in ("original", "perturbed")]
        outlines = [examples[f"{which}_top_k"][row].view(height, width) for which in ("original", "perturbed")]
        scale = max(float(maps[0].max()), float(maps[1].max()), 1e-12)
        scores = ", ".join(f"{name} {float(values[row]):.3f}" for name, values in examples["scores"].items())
        titles = [f"test image {int(examples['index'][row])} (label {int(examples['label'][row])})", "perturbed",
                  "original saliency", f"perturbed saliency\n{scores}"]
        for col, ax in enumerate(axes[row]):
            if col < 2:
                picture = examples["image" if col == 0 else "perturbed"][row].permute(1, 2, 0).clamp(0, 1).numpy()
                ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            else:
                shown = ax.imshow(maps[col - 2].numpy(), cmap="hot", vmin=0, vmax=scale)
                ax.contour(outlines[col - 2].float().numpy(), levels=[0.5], colors="cyan", linewidths=0.7)
                bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
                bar.ax.tick_params(labelsize=7)
                if col == 3:
                    bar.set_label("saliency (pixel mean 1)", fontsize=7)
                if examples.get("draw_centers"):
                    for key, mark in (("original_center", ORIGINAL_MARK), ("perturbed_center", PERTURBED_MARK)):
                        center = examples[key][row]
                        ax.scatter([float(center[1])], [float(center[0])], **mark)
            region = examples.get("region")
            if region is not None and col != 0:
                top, bottom, left, right = region
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                       edgecolor="deepskyblue", linewidth=1.2, linestyle="--"))
            ax.set_title(titles[col], fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{title}\n{_legend(examples)}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def _legend(examples: dict[str, Any]) -> str:
    parts = [f"cyan outline: top-{int(examples.get('k', 0))} pixels of each map"]
    if examples.get("draw_centers"):
        parts.append("centre of mass: x original, + perturbed")
    if examples.get("region") is not None:
        parts.append("dashed: target region")
    return "; ".join(parts)


def explanation_figure(images: torch.Tensor, maps: dict[str, Any], count: int, path: Path, title: str) -> None:
    """The first `count` images of `explain`, each beside its saliency map (with a colour bar), four pairs a row."""
    if count == 0:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_row = min(4, count)
    lines = -(-count // per_row)
    fig, axes = plt.subplots(lines, 2 * per_row, figsize=(3.0 * 2 * per_row, 2.6 * lines + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(count):
        image_ax, map_ax = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        picture = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
        image_ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
        image_ax.set_title(f"test image {int(maps['index'][i])}\nlabel {int(maps['label'][i])}, predicted "
                           f"{int(maps['prediction'][i])}", fontsize=8)
        shown = map_ax.imshow(maps["saliency"][i].numpy(), cmap="hot", vmin=0)
        fig.colorbar(shown, ax=map_ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        map_ax.set_title("saliency (pixel mean 1)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
