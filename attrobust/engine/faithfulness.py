"""The faithfulness metrics of `eval.faithfulness` over a set of test images: one row per scored image.

Scored images are those the model classifies correctly (as for the attacks on explanations). Images go in units of
the attacks' chunk size (`eval.attribution_batch_size`, or `auto_batch_size`: one explainer call per unit), and every
unit's curve points go through the model in passes of about `ROW_PIXELS` input values (256 MNIST-sized rows on a CPU,
where larger passes were no faster per row; 20,000 on a GPU; fewer rows of larger images); a shard
(`engine.sharding`) does every n-th unit.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch
from torch import nn

from attrobust.data.base import ImageSet
from attrobust.engine.attribution import AUTO_POINTS, auto_batch_size, correctly_classified
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.sharding import WHOLE, Shard
from attrobust.explainers.base import Explainer
from attrobust.faithfulness import FaithfulnessMetric
from attrobust.faithfulness.base import area, curves

log = logging.getLogger("attrobust")
ROW_PIXELS = {"cpu": 256 * 28 * 28, "cuda": AUTO_POINTS["cuda"] * 28 * 28}  # input values per forward pass


def faithfulness_per_image(model: nn.Module, data: ImageSet, explainer: Explainer,
                           metrics: list[FaithfulnessMetric], predict_batch_size: int,
                           images_per_unit: int | None = None, shard: Shard = WHOLE) -> pd.DataFrame:
    """One row per correctly classified image of this shard's units: its test-split index, label, the model's
    confidence (softmax probability of the label on the clean image, which insertion and deletion follow) and each
    metric's area under the curve (float64)."""
    device = next(model.parameters()).device
    scored = data.select(correctly_classified(model, data, predict_batch_size))
    for metric in metrics:
        metric.check_fits(scored.images.shape[-2] * scored.images.shape[-1])
    values_per_row = max(1, scored.images[0].numel()) if len(scored) else 1
    rows = max(1, ROW_PIXELS["cuda" if device.type == "cuda" else "cpu"] // values_per_row)
    unit = images_per_unit or auto_batch_size(device, explainer.passes_per_image)
    units = list(shard.units(len(scored), unit))
    mine = torch.cat([torch.arange(a, b) for a, b in units]) if units else torch.zeros(0, dtype=torch.long)
    table = pd.DataFrame({"index": scored.index[mine].numpy(), "label": scored.labels[mine].numpy()})
    values: dict[str, list[torch.Tensor]] = {metric.column: [] for metric in metrics}
    confidence: list[torch.Tensor] = []
    started = time.monotonic()
    with ProgressReporter("faithfulness", len(mine)) as progress:
        for first, end in units:
            x, y = scored.batch(slice(first, end), device)
            with torch.no_grad():
                confidence.append(model(x).softmax(1).gather(1, y[:, None])[:, 0].double().cpu())
            attributions = explainer.explain(model, x, y).detach()
            for metric in metrics:
                values[metric.column].append(area(curves(metric, model, x, y, attributions, rows)).cpu())
            progress.advance(end - first)
    table["confidence"] = torch.cat(confidence).numpy() if units else []
    for metric in metrics:
        table[metric.column] = torch.cat(values[metric.column]).numpy() if units else []
        log.info("%s of %s (%d steps, baseline %s) on %d images: mean %.6g", metric.column, explainer.describe(),
                 metric.steps, metric.baseline, len(table), table[metric.column].mean())
    log.info("faithfulness took %.0f s", time.monotonic() - started)
    return table
