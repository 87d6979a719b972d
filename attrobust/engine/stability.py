"""The stability metrics of `eval.stability` over a set of test images: per-image values and result rows.

Scored images are those the model classifies correctly (as for the attacks on explanations); each image's draws are
seeded by (`seed`, its test-split index), so values do not depend on the chunking. Images go through `estimate` in
chunks sized so that one explainer call stays near what the device handles best (draws x images x the explainer's
passes per image).
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch
from torch import nn

from attrobust.data.base import ImageSet
from attrobust.engine.attribution import AUTO_POINTS, correctly_classified
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.sharding import WHOLE, Shard
from attrobust.explainers.base import CPU_POINTS_PER_PASS, Explainer
from attrobust.stability import StabilityMetric, estimate

log = logging.getLogger("attrobust")


def rows_per_call(device: torch.device, explainer: Explainer) -> int:
    """Perturbed images per explainer call: on a CPU the rows per pass that are fastest per row there
    (`CPU_POINTS_PER_PASS`: larger passes are slower per row), on a GPU the attacks' chunk size."""
    budget = CPU_POINTS_PER_PASS if device.type == "cpu" else AUTO_POINTS["cuda"]
    return max(1, budget // explainer.passes_per_image)


def stability_per_image(model: nn.Module, data: ImageSet, explainer: Explainer, metrics: list[StabilityMetric],
                        seed: int, predict_batch_size: int, shard: Shard = WHOLE) -> pd.DataFrame:
    """One row per correctly classified image (of this shard: every n-th group of images, `stability_units`): its
    test-split index, label and each metric's value (float64)."""
    device = next(model.parameters()).device
    positions = correctly_classified(model, data, predict_batch_size)
    scored = data.select(positions)
    rows = rows_per_call(device, explainer)
    units = stability_units(len(scored), metrics, rows, shard)
    mine = torch.cat([torch.arange(first, end) for first, end in units]) if units else torch.zeros(0, dtype=torch.long)
    table = pd.DataFrame({"index": scored.index[mine].numpy(), "label": scored.labels[mine].numpy()})
    for metric in metrics:
        started, values = time.monotonic(), []
        images = max(1, rows // metric.samples)  # images per estimate call: one call explains `rows` draws or more
        with ProgressReporter(f"stability {metric.column}", len(mine)) as progress:
            for first, end in units:
                for start in range(first, end, images):
                    stop = min(start + images, end)
                    x, y = scored.batch(slice(start, stop), device)
                    ids = scored.index[start:stop].tolist()
                    values.append(estimate(metric, model, explainer, x, y, ids, seed, rows).values.cpu())
                    progress.advance(stop - start)
        table[metric.column] = torch.cat(values).numpy() if values else []
        log.info("%s of %s (%d draws) on %d images: mean %.6g (%.0f s)", metric.column, explainer.describe(),
                 metric.samples, len(table), table[metric.column].mean(), time.monotonic() - started)
        if len(table) and table[metric.column].isna().all():
            log.warning("%s is undefined (NaN) for every image: a draw changed each image's prediction (relative "
                        "metrics: lower the noise or set refuse_changed_predictions=false) or every map is zero",
                        metric.column)
    return table


def stability_units(total: int, metrics: list[StabilityMetric], rows: int, shard: Shard) -> list[tuple[int, int]]:
    """This shard's groups of scored images. Every image's draws are seeded by its own index, so a group's size only
    balances the work: the images of one estimate call of the metric with the most draws."""
    images = max(1, rows // max((metric.samples for metric in metrics), default=1))
    return list(shard.units(total, images))
