"""The stability metrics of `eval.stability` over a set of test images: per-image values and result rows.

Scored images are those the model classifies correctly (as for the attacks on explanations); each image's draws are
seeded by (`seed`, its test-split index), so values do not depend on the chunking. Images go through `estimate` in
chunks sized so that one explainer call stays near what the device handles best (draws x images x the explainer's
passes per image).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import pandas as pd
import torch
from torch import nn

from attrobust.data.base import ImageSet
from attrobust.engine.attribution import AUTO_POINTS, correctly_classified
from attrobust.explainers.base import CPU_POINTS_PER_PASS, Explainer
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity
from attrobust.stability import StabilityMetric, estimate

log = logging.getLogger("attrobust")


def rows_per_call(device: torch.device, explainer: Explainer) -> int:
    """Perturbed images per explainer call: on a CPU the rows per pass that are fastest per row there
    (`CPU_POINTS_PER_PASS`: larger passes are slower per row), on a GPU the attacks' chunk size."""
    budget = CPU_POINTS_PER_PASS if device.type == "cpu" else AUTO_POINTS["cuda"]
    return max(1, budget // explainer.passes_per_image)


def stability_per_image(model: nn.Module, data: ImageSet, explainer: Explainer, metrics: list[StabilityMetric],
                        seed: int, predict_batch_size: int) -> pd.DataFrame:
    """One row per correctly classified image: its test-split index, label and each metric's value (float64)."""
    device = next(model.parameters()).device
    positions = correctly_classified(model, data, predict_batch_size)
    scored = data.select(positions)
    rows = rows_per_call(device, explainer)
    table = pd.DataFrame({"index": scored.index.numpy(), "label": scored.labels.numpy()})
    for metric in metrics:
        started, values = time.monotonic(), []
        images = max(1, rows // metric.samples)  # images per estimate call: one call explains `rows` draws or more
        for start in range(0, len(scored), images):
            x, y = scored.batch(slice(start, start + images), device)
            ids = scored.index[start:start + images].tolist()
            values.append(estimate(metric, model, explainer, x, y, ids, seed, rows).values.cpu())
        table[metric.column] = torch.cat(values).numpy() if values else []
        log.info("%s of %s (%d draws) on %d images: mean %.6g (%.0f s)", metric.column, explainer.describe(),
                 metric.samples, len(scored), table[metric.column].mean(), time.monotonic() - started)
        if len(scored) and table[metric.column].isna().all():
            log.warning("%s is undefined (NaN) for every image: a draw changed each image's prediction (relative "
                        "metrics: lower the noise or set refuse_changed_predictions=false) or every map is zero",
                        metric.column)
    return table


def stability_rows(identity: RunIdentity, per_image: pd.DataFrame, metrics: list[StabilityMetric]) -> pd.DataFrame:
    """The mean of each metric over the images where it is defined (n: how many), and the images scored."""
    rows = [{**asdict(identity), "metric": metric.column, "value": float(per_image[metric.column].mean()),
             "unit": metric.unit, "n": int(per_image[metric.column].notna().sum())} for metric in metrics]
    rows.append({**asdict(identity), "metric": "images_scored", "value": float(len(per_image)), "unit": "count",
                 "n": len(per_image)})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
