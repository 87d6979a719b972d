"""Figures: the paper's Figure 1 layout (image, perturbed image, original and perturbed saliency) for a few images."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from attrobust.atomic import _write_atomic


def attribution_figure(examples: dict[str, torch.Tensor], path: Path, title: str) -> None:
    """One row per example: image, perturbed image, original saliency, perturbed saliency (with the first metrics of
    `eval.metrics` above it, as fractions)."""
    count = len(examples["label"])
    if count == 0:
        return
    import matplotlib  # imported when a figure is drawn: it takes a third of a second

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = examples["image"].shape[-2:]
    fig, axes = plt.subplots(count, 4, figsize=(10, 2.7 * count + 0.6), squeeze=False)
    for row in range(count):
        images = [examples["image"][row], examples["perturbed"][row]]
        maps = [examples["original_saliency"][row].view(height, width),
                examples["perturbed_saliency"][row].view(height, width)]
        scale = max(float(maps[0].max()), float(maps[1].max()), 1e-12)
        label = int(examples["label"][row])
        scores = ", ".join(f"{name} {float(values[row]):.3f}" for name, values in examples["scores"].items())
        titles = [f"test image {int(examples['index'][row])} (label {label})", "perturbed",
                  "original saliency", f"perturbed saliency\n{scores}"]
        for col, (ax, text) in enumerate(zip(axes[row], titles, strict=True)):
            if col < 2:
                picture = images[col].permute(1, 2, 0).clamp(0, 1).numpy()
                ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(maps[col - 2].numpy(), cmap="hot", vmin=0, vmax=scale)
            ax.set_title(text, fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(path, lambda target: target.write_bytes(buffer.getvalue()))
