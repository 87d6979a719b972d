"""The images a figure shows and what it draws of them: chosen test images, or the most / median / least changed.

`figure_images: changed` ranks the images whose attack kept an iterate (all scored images when none did) by the first
metric of `eval.metrics`, from the most changed to the least, and takes `count` evenly spaced ranks (3: the most, the
median and the least changed). `first` takes the first scored images; a list takes those test indices. The maps are
computed again from the kept iterates the store saved (the same explainer on the same images). `examples.npz` holds
the same as plain arrays with the images' per-image measures.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from attrobust.atomic import write_bytes_atomic
from attrobust.attacks.attribution import AttributionAttack
from attrobust.data.base import ImageSet
from attrobust.engine.attribution import MeasureStore
from attrobust.metrics import Metric, center_of_mass, top_k_mask

log = logging.getLogger("attrobust")
FigureChoice = Literal["changed", "first"] | Sequence[int]


def figure_rows(per_image: pd.DataFrame, headline: Metric, choice: FigureChoice, count: int) -> list[int]:
    """Positions (rows of `per_image`) of the images to draw, in the order they are drawn."""
    if count == 0 or per_image.empty:
        return []
    if choice == "first":
        return list(range(min(count, len(per_image))))
    if choice == "changed":
        candidates = per_image[per_image["qualified"].astype(bool) & per_image[headline.column].notna()]
        candidates = candidates if len(candidates) else per_image[per_image[headline.column].notna()]
        if candidates.empty:
            return []
        values = candidates[headline.column].to_numpy()
        order = np.argsort(values if headline.higher_is_better else -values, kind="stable")  # most changed first
        ranks = np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int))
        return [int(candidates.index[order[rank]]) for rank in ranks]
    wanted = [int(i) for i in choice]
    where = {int(index): row for row, index in enumerate(per_image["index"])}
    missing = [i for i in wanted if i not in where]
    if missing:
        log.warning("figure_images: test images %s were not scored (misclassified or not selected by eval.*); "
                    "the figure leaves them out", missing)
    return [where[i] for i in wanted if i in where]


def figure_examples(model: nn.Module, attack: AttributionAttack, data: ImageSet, per_image: pd.DataFrame,
                    rows: list[int], store: MeasureStore, metrics: list[Metric],
                    choice: FigureChoice = "changed") -> dict[str, object]:
    """What `attribution_figure` draws for the images at `rows`: images, kept iterates, both maps, their top-k masks
    (`attack.eval_k`), the centres of mass, the attack's target region, and the first two metrics."""
    if not rows:
        return {}
    device = next(model.parameters()).device
    chosen = per_image.iloc[rows]
    position_of = {int(index): position for position, index in enumerate(data.index.tolist())}
    positions = torch.tensor([position_of[int(i)] for i in chosen["index"]])
    x, y = data.batch(positions, device)
    perturbed = store.perturbed(rows).to(device)
    was_training = model.training
    model.eval()
    try:
        original_map, perturbed_map = (attack.saliency(model, images, y).float().cpu() for images in (x, perturbed))
    finally:
        model.train(was_training)
    size = (x.shape[-2], x.shape[-1])
    k = min(attack.eval_k, original_map.shape[1])
    return {"index": torch.tensor(chosen["index"].to_numpy()), "label": y.cpu(), "image": x.cpu(),
            "perturbed": perturbed.cpu(), "original_saliency": original_map, "perturbed_saliency": perturbed_map,
            "original_top_k": top_k_mask(original_map, k), "perturbed_top_k": top_k_mask(perturbed_map, k), "k": k,
            "original_center": center_of_mass(original_map, size).float(),
            "perturbed_center": center_of_mass(perturbed_map, size).float(),
            "draw_centers": attack.draws_centers, "region": attack.region_pixels(size), "eps": float(attack.eps),
            "scores": {_score_name(m): torch.tensor(chosen[m.column].to_numpy()) * m.scale for m in metrics[:2]},
            "row_labels": row_labels(len(rows), choice)}


def _score_name(metric: Metric) -> str:
    """'IN (%)', 'CO': a score's name as the tables head it (values in the same unit)."""
    return f"{metric.title} ({metric.unit})" if metric.unit else metric.title


def row_labels(count: int, choice: FigureChoice) -> list[str]:
    """What each row of the figure is: for `changed`, the most / median / least changed (evenly spaced ranks)."""
    if choice != "changed":
        return ["first" if choice == "first" else "chosen"] * count
    if count == 1:
        return ["most changed"]
    names = {0: "most changed", count - 1: "least changed"}
    if count % 2 == 1:
        names[count // 2] = "median"
    return [names.get(row, f"rank {row + 1} of {count}") for row in range(count)]


def write_examples_npz(examples: dict[str, Any], per_image: pd.DataFrame, path: Path) -> None:
    """`examples.npz`: the drawn images as arrays any tool reads (numpy, Quantus): `index`, `label`, `image` and
    `perturbed` (N, C, H, W) in [0, 1], `original_map` and `perturbed_map` (N, H, W) saliency, `original_top_k`
    and `perturbed_top_k` (N, H, W) masks, `eps`, and each per-image measure of the attack on these images
    (`measure_<name>`, in the order of `index`). Plain arrays only: numpy reads it with allow_pickle=False."""
    image = examples["image"]
    shape = (len(image), *image.shape[-2:])
    arrays: dict[str, np.ndarray] = {
        "index": examples["index"].numpy(), "label": examples["label"].numpy(),
        "image": image.float().numpy(), "perturbed": examples["perturbed"].float().numpy(),
        "original_map": examples["original_saliency"].reshape(shape).float().numpy(),
        "perturbed_map": examples["perturbed_saliency"].reshape(shape).float().numpy(),
        "original_top_k": examples["original_top_k"].reshape(shape).bool().numpy(),
        "perturbed_top_k": examples["perturbed_top_k"].reshape(shape).bool().numpy(),
        "eps": np.float64(examples["eps"])}
    rows = per_image.set_index("index").reindex(arrays["index"])
    for column in rows.columns:
        if pd.api.types.is_numeric_dtype(rows[column]) or pd.api.types.is_bool_dtype(rows[column]):
            arrays[f"measure_{column}"] = rows[column].to_numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())
