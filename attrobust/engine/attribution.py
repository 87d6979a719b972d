"""Attribution-robustness evaluation: run an attribution attack on the correctly classified test images, in chunks,
and score each kept map with the configured metrics.

Only images the model classifies correctly are attacked and scored, as in the reference evaluation. Chunks hold
`batch_size` images; every image of a chunk and all of its explainer's passes (IG path points, noise samples) go
through the network together. A chunk that runs out of CUDA memory is retried in halves, and later chunks keep the
smaller size. The per-image table has the columns `BOOKKEEPING_COLUMNS` then one column per metric, in the order of
`eval.metrics`; an image without a counted iterate scores each metric's `identical` value (the reference's
accounting).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.attacks.attribution import AttributionAttack, AttributionAttackResult
from attrobust.data.base import ImageSet
from attrobust.engine.progress import ProgressReporter
from attrobust.metrics import MapSpec, Metric

log = logging.getLogger("attrobust")
BOOKKEEPING_COLUMNS = ["index", "label", "qualified", "moved", "support_covered"]
# Explainer passes (IG path points, noise samples) per chunk of images that `auto_batch_size` aims for. On a CPU the
# explainers split a chunk's points into passes of 100 rows (explainers.base.rows_per_pass), so a chunk of 8 IG
# images only batches the bookkeeping.
AUTO_POINTS = {"cpu": 800, "cuda": 20_000}
# At most this many images per chunk: a one-pass explainer (gradient, Grad-CAM) does not split its chunk into passes,
# and a CPU's second-order passes are fastest at about 100 rows (explainers.base.CPU_POINTS_PER_PASS)
AUTO_IMAGES = {"cpu": 100, "cuda": 1_000}


@dataclass(frozen=True)
class AttributionEvaluation:
    per_image: pd.DataFrame           # one row per scored image: BOOKKEEPING_COLUMNS, then one column per metric
    examples: dict[str, Tensor]       # the first scored images: image, perturbed, saliency maps, label
    n_images: int                     # test images considered (scored = correctly classified)


def auto_batch_size(device: torch.device, passes_per_image: int) -> int:
    """Images per chunk so that a chunk's explainer passes stay near what the device handles best."""
    kind = device.type if device.type in AUTO_POINTS else "cpu"
    return max(1, min(AUTO_IMAGES[kind], AUTO_POINTS[kind] // passes_per_image))


def correctly_classified(model: nn.Module, data: ImageSet, batch_size: int) -> Tensor:
    """Indices (into `data`) of the images the model classifies correctly."""
    device = next(model.parameters()).device
    correct = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x, y = data.batch(slice(start, start + batch_size), device)
            correct.append(model(x).argmax(1) == y)
    return torch.cat(correct).nonzero().flatten().cpu()  # one wait for the device, after the loop


def evaluate_attributions(model: nn.Module, data: ImageSet, attack: AttributionAttack, metrics: list[Metric],
                          batch_size: int | None, predict_batch_size: int, keep_examples: int = 4,
                          log_every_s: float = 30.0) -> AttributionEvaluation:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunk = batch_size or auto_batch_size(device, attack.explainer.passes_per_image)
    columns = BOOKKEEPING_COLUMNS + [metric.column for metric in metrics]
    try:
        scored = correctly_classified(model, data, predict_batch_size)
        rows: list[pd.DataFrame] = []
        kept: list[AttributionAttackResult] = []
        with ProgressReporter(f"attack {attack.name}", len(scored), log_every_s) as progress:
            start = 0
            while start < len(scored):
                index = scored[start:start + chunk]
                x, y = data.batch(index, device)
                try:
                    result = attack.run(model, x, y)
                except torch.cuda.OutOfMemoryError:
                    if len(index) == 1:
                        raise
                    result = None  # retried below, once the failed pass's tensors are released with the exception
                if result is None:
                    chunk = len(index) // 2
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    log.warning("out of device memory with %d images per chunk: continuing with %d (set "
                                "eval.attribution_batch_size=%d to start there)", len(index), chunk, chunk)
                    continue
                rows.append(_per_image(index, y, result, metrics, attack.eval_k))
                if sum(len(r.qualified) for r in kept) < keep_examples:
                    kept.append(result)
                progress.advance(len(index), lambda: _running_means(rows, metrics))
                start += len(index)
    finally:
        model.train(was_training)
    per_image = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return AttributionEvaluation(per_image, _examples(kept, data, scored, keep_examples, per_image, metrics),
                                 len(data))


def score(result: AttributionAttackResult, metrics: list[Metric], k: int) -> dict[str, Tensor]:
    """Each metric between the original and the kept maps; an image without a counted iterate scores the metric's
    value of identical maps (the reference's accounting)."""
    original, perturbed = result.original_saliency, result.perturbed_saliency
    maps = MapSpec(result.image_size, min(k, original.shape[1]))
    values = {}
    for metric in metrics:
        value = metric(original, perturbed, maps)
        values[metric.column] = torch.where(result.qualified, value, torch.full_like(value, metric.identical))
    return values


def _running_means(rows: list[pd.DataFrame], metrics: list[Metric]) -> str:
    done = pd.concat(rows, ignore_index=True)
    return " ".join(f"{m.title}={m.scale * done[m.column].mean():.3g}{m.unit}"
                    for m in metrics[:2])


def _per_image(index: Tensor, y: Tensor, result: AttributionAttackResult, metrics: list[Metric],
               k: int) -> pd.DataFrame:
    columns = {"index": index, "label": y, "qualified": result.qualified, "moved": result.moved,
               "support_covered": result.support_covered, **score(result, metrics, k)}
    return pd.DataFrame({name: value.detach().cpu().numpy() for name, value in columns.items()})


def _examples(kept: list[AttributionAttackResult], data: ImageSet, scored: Tensor, n: int, per_image: pd.DataFrame,
              metrics: list[Metric]) -> dict[str, Tensor]:
    """The first `n` scored images (those of the first chunks, `kept`) with their maps and first two metrics."""
    if not kept:
        return {}
    cat = lambda name: torch.cat([getattr(r, name) for r in kept])[:n].detach().cpu()  # noqa: E731
    count = min(n, sum(len(r.qualified) for r in kept))
    index = scored[:count]
    return {"index": index, "label": data.labels[index], "image": data.images[index].float() / 255,
            "perturbed": cat("perturbed").float(), "original_saliency": cat("original_saliency").float(),
            "perturbed_saliency": cat("perturbed_saliency").float(),
            "scores": {m.title: torch.tensor(per_image[m.column].to_numpy()[:count]) for m in metrics[:2]}}
