"""Figures: the paper's Figure 1 layout (image, perturbed image, original and perturbed saliency) for a few images,
with the perturbation itself, and what the attack aimed at drawn on top: the top-k pixels outlined along pixel
borders, the centres of mass (mass_center), the target region (target), and colour bars in the maps' unit (saliency
normalised to a pixel mean of 1). Titles name the method, model, dataset and attack; scores are in the tables' units;
every figure is written as PNG and PDF."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from attrobust.atomic import write_bytes_atomic

ORIGINAL_MARK = {"marker": "x", "color": "deepskyblue", "s": 40}
PERTURBED_MARK = {"marker": "+", "color": "lime", "s": 60}


def _with_bar(fig: Any, ax: Any, shown: Any, label: str) -> None:
    """A colour bar beside `ax` for the image `shown`, labelled `label` (none when empty)."""
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=7)


def _mark_centers(ax: Any, examples: dict[str, Any], row: int) -> None:
    """Both maps' centres of mass (mass_center attacks), on a saliency map of row `row`."""
    for key, mark in (("original_center", ORIGINAL_MARK), ("perturbed_center", PERTURBED_MARK)):
        center = examples[key][row]
        ax.scatter([float(center[1])], [float(center[0])], **mark)


def attribution_figure(examples: dict[str, Any], path: Path, title: str) -> None:
    """One labelled row per example (most / median / least changed, or the chosen images): image, perturbed image,
    the perturbation (x' - x, on a diverging scale of +-eps), original saliency, perturbed saliency (with the first
    metrics of `eval.metrics` above it, in the tables' units). Both maps of a row share one colour scale. Written as
    PNG (200 dpi) and, beside it, PDF (vector). Examples from `attrobust.engine.examples.figure_examples`."""
    count = len(examples.get("label", []))
    if count == 0:
        return
    import matplotlib  # imported when a figure is drawn: it takes a third of a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = examples["image"].shape[-2:]
    eps = float(examples.get("eps", 0.0)) or None
    labels = examples.get("row_labels") or [""] * count
    fig, axes = plt.subplots(count, 5, figsize=(14.0, 2.8 * count + 0.9), squeeze=False)
    for row in range(count):
        maps = [examples[f"{which}_saliency"][row].view(height, width) for which in ("original", "perturbed")]
        outlines = [examples[f"{which}_top_k"][row].view(height, width) for which in ("original", "perturbed")]
        scale = max(float(maps[0].max()), float(maps[1].max()), 1e-12)
        scores = ", ".join(f"{name} {float(values[row]):.{2 if '(%)' in name else 3}f}"
                           for name, values in examples["scores"].items())
        titles = [f"test image {int(examples['index'][row])} (label {int(examples['label'][row])})", "perturbed",
                  "perturbation", "original saliency", f"perturbed saliency\n{scores}"]
        for col, ax in enumerate(axes[row]):
            if col < 2:
                picture = examples["image" if col == 0 else "perturbed"][row].permute(1, 2, 0).clamp(0, 1).numpy()
                ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            elif col == 2:
                change = (examples["perturbed"][row] - examples["image"][row]).mean(0).numpy()
                bound = eps or max(float(abs(change).max()), 1e-12)
                _with_bar(fig, ax, ax.imshow(change, cmap="RdBu_r", vmin=-bound, vmax=bound),
                          "x' - x (pixels in [0, 1])")
            else:
                _with_bar(fig, ax, ax.imshow(maps[col - 3].numpy(), cmap="hot", vmin=0, vmax=scale),
                          "saliency (pixel mean 1)" if col == 4 else "")
                _outline(ax, outlines[col - 3].bool().numpy())
                if examples.get("draw_centers"):
                    _mark_centers(ax, examples, row)
            region = examples.get("region")
            if region is not None and col not in (0, 2):
                top, bottom, left, right = region
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                       edgecolor="deepskyblue", linewidth=1.2, linestyle="--"))
            ax.set_title(titles[col], fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[row][0].set_ylabel(labels[row], fontsize=10, fontweight="bold")
    fig.suptitle(f"{title}\n{_legend(examples)}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _outline(ax: Any, mask: Any) -> None:
    """The edges of the pixels in `mask`, drawn along pixel borders (a contour would cut pixels diagonally)."""
    import numpy as np

    rows, cols = mask.shape
    segments = []
    padded = np.pad(mask, 1)
    for r, c in zip(*np.nonzero(mask), strict=True):
        top, bottom, left, right = r - 0.5, r + 0.5, c - 0.5, c + 0.5
        sides = (((-1, 0), (left, top), (right, top)), ((1, 0), (left, bottom), (right, bottom)),
                 ((0, -1), (left, top), (left, bottom)), ((0, 1), (right, top), (right, bottom)))
        for (dr, dc), start, end in sides:
            if not padded[r + 1 + dr, c + 1 + dc]:  # a border with a pixel outside the mask
                segments.append([start, end])
    if segments:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segments, colors="cyan", linewidths=0.7))
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)


def save_figure(fig: Any, path: Path) -> None:
    """`path` (PNG, 200 dpi) and the same figure as vector PDF beside it, each written atomically."""
    for target, options in ((path, {"format": "png", "dpi": 200}), (path.with_suffix(".pdf"), {"format": "pdf"})):
        buffer = io.BytesIO()
        fig.savefig(buffer, **options)
        write_bytes_atomic(target, buffer.getvalue())


def _legend(examples: dict[str, Any]) -> str:
    parts = [f"cyan outline: top-{int(examples.get('k', 0))} pixels of each map"]
    if examples.get("draw_centers"):
        parts.append("centre of mass: x original, + perturbed")
    if examples.get("region") is not None:
        parts.append("dashed: target region")
    return "; ".join(parts)


def explanation_figure(images: torch.Tensor, maps: dict[str, Any], count: int, path: Path, title: str,
                       overlay: bool = False) -> None:
    """The first `count` images of `explain`, each beside its saliency map, four pairs a row, all maps on one colour
    scale (one colour bar: comparable across images); with `overlay` (Grad-CAM) the map is drawn over its image.
    PNG and PDF, as `save_figure`."""
    if count == 0:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_row = min(4, count)
    lines = -(-count // per_row)
    fig, axes = plt.subplots(lines, 2 * per_row, figsize=(3.0 * 2 * per_row, 2.6 * lines + 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    scale = max(float(maps["saliency"][:count].max()), 1e-12)
    shown = None
    for i in range(count):
        image_ax, map_ax = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        picture = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
        grey = picture.squeeze(-1) if picture.shape[-1] == 1 else picture
        image_ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        image_ax.set_title(f"test image {int(maps['index'][i])}\nlabel {int(maps['label'][i])}, predicted "
                           f"{int(maps['prediction'][i])}", fontsize=8)
        if overlay:
            map_ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        shown = map_ax.imshow(maps["saliency"][i].numpy(), cmap="jet" if overlay else "hot", vmin=0, vmax=scale,
                              alpha=0.5 if overlay else 1.0)
        map_ax.set_title("map over the image" if overlay else "saliency", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes.flat), fraction=0.02, pad=0.01)
        bar.set_label("saliency (pixel mean 1), one scale for all maps", fontsize=8)
    save_figure(fig, path)
    plt.close(fig)
