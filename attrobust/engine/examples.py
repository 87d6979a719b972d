"""The images a figure shows and what it draws of them: chosen test images, or the most / median / least changed.

`figure_images: changed` ranks the images whose attack kept an iterate (all scored images when none did) by the first
metric of `eval.metrics`, from the most changed to the least, and takes `count` evenly spaced ranks (3: the most, the
median and the least changed). `first` takes the first scored images; a list takes those test indices. The maps are
computed again from the kept iterates the store saved (the same explainer on the same images).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

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
