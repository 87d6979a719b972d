"""Attribution-robustness evaluation: run an attribution attack on the correctly classified test images, in chunks,
and score each kept map with the configured metrics.

Only images the model classifies correctly are attacked and scored, as in the reference evaluation. Chunks hold
`batch_size` images; every image of a chunk and all of its explainer's passes (IG path points, noise samples) go
through the network together. A chunk that runs out of CUDA memory is done in pieces of half its size, and later
chunks keep the smaller pieces. A shard (`engine.sharding`) does every n-th chunk. The per-image table has the
columns `BOOKKEEPING_COLUMNS` then one column per metric, in the order of `eval.metrics`; an image without a counted
iterate scores each metric's `identical` value (the reference's accounting).
`index` is the image's index in the whole test split.

Work is never lost: each finished chunk's rows (and kept iterates) are written atomically to a `MeasureStore`, and a
run that was killed (SIGKILL, a lost node) or stopped (SIGTERM / SIGUSR1, between chunks) resumes at its first
missing chunk when the same command runs again in the same folder. Every chunk draws its random numbers (random
starts, random baselines) from a seed of its own (`unit_seed`: the run's seed and the chunk's first position), so a
resumed run, and the shards of a sharded one, end with the rows of an uninterrupted whole run (same chunk size,
which the store records).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.attacks.attribution import AttributionAttack, AttributionAttackResult
from attrobust.data.base import ImageSet
from attrobust.engine.measure_store import MeasureStore
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.sharding import WHOLE, Shard, unit_seed
from attrobust.engine.stopping import catch_stop_signals
from attrobust.errors import AttrobustError
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
    per_image: pd.DataFrame  # one row per scored image: BOOKKEEPING_COLUMNS, then one column per metric
    n_images: int            # test images considered (scored = correctly classified)
    resumed: int = 0         # scored images whose rows an earlier, interrupted run had written
    chunk: int = 0           # images per chunk (the unit a shard takes)
    piece: int = 0           # images per attack call at the end (smaller than chunk after running out of memory)


def auto_batch_size(device: torch.device, passes_per_image: int) -> int:
    """Images per chunk so that a chunk's explainer passes stay near what the device handles best."""
    kind = device.type if device.type in AUTO_POINTS else "cpu"
    return max(1, min(AUTO_IMAGES[kind], AUTO_POINTS[kind] // passes_per_image))


def correctly_classified(model: nn.Module, data: ImageSet, batch_size: int) -> Tensor:
    """Positions (into `data`) of the images the model classifies correctly."""
    device = next(model.parameters()).device
    correct = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x, y = data.batch(slice(start, start + batch_size), device)
            correct.append(model(x).argmax(1) == y)
    return torch.cat(correct).nonzero().flatten().cpu()  # one wait for the device, after the loop


def evaluate_attributions(model: nn.Module, data: ImageSet, attack: AttributionAttack, metrics: list[Metric],
                          batch_size: int | None, predict_batch_size: int, store: MeasureStore | None = None,
                          seed: int = 0, log_every_s: float = 30.0, shard: Shard = WHOLE) -> AttributionEvaluation:
    """Per-image measures of `attack` on the images of `data` that `model` classifies correctly (module docstring),
    in this shard's chunks. With a `store` on disk, finished chunks are saved as they finish and an earlier run's are
    taken up."""
    store, device, was_training = store if store is not None else MeasureStore(None), _device(model), model.training
    model.eval()
    steps_per_image = attack.steps * attack.restarts_to_run
    try:
        scored = correctly_classified(model, data, predict_batch_size)
        chunk, piece, done = store.begin(batch_size or auto_batch_size(device, attack.explainer.passes_per_image))
        units = list(shard.units(len(scored), chunk))
        mine = sum(end - first for first, end in units)
        resumed = sum(len(part) for part in done.values())
        if resumed:
            log.info("resuming %s: %d of %d images were measured by an earlier run", attack.name, resumed, mine)
        rows: list[pd.DataFrame] = []

        def status() -> str:
            return _running_means(rows, metrics) if rows else ""

        with catch_stop_signals() as stop, ProgressReporter(f"attack {attack.name}", mine, log_every_s,
                                                            already_done=resumed) as progress:
            finished = computed = 0  # of this shard's images, in unit order; of them, measured by this run
            for first, end in units:
                start = first
                while start < end:
                    if start in done:
                        rows.append(done[start])
                        finished += len(done[start])
                        start += len(done[start])
                        continue
                    if stop.signum is not None:
                        raise AttrobustError(stopped(stop.name, f"after {finished} of {mine} images", attack.name))
                    index = scored[start:min(start + piece, end)]
                    x, y = data.batch(index, device)
                    torch.manual_seed(unit_seed(seed, start))
                    step_share = len(index) / steps_per_image  # of an image, per step of the piece
                    result = attack_or_none_out_of_memory(attack, model, x, y,
                                                          partial(progress.advance, step_share, status))
                    if result is None:  # retried in halves, once the failed pass's tensors are released
                        piece = smaller_pieces(len(index), store, chunk)
                        progress.advance_to(resumed + computed)
                        continue
                    part = _per_image(data.index[index], y, result, metrics, attack.eval_k)
                    store.save(start, part, result.perturbed.detach().float().cpu())
                    rows.append(part)
                    start += len(index)
                    finished += len(index)
                    computed += len(index)
                    progress.advance_to(resumed + computed, status)
            if stop.signum is not None:  # during the last chunk: its measures are saved, the next attack must not run
                raise AttrobustError(stopped(stop.name, f"after all {mine} images", attack.name, then="go on"))
    finally:
        model.train(was_training)
    per_image = pd.concat(rows, ignore_index=True) if rows else \
        pd.DataFrame(columns=BOOKKEEPING_COLUMNS + [metric.column for metric in metrics])
    return AttributionEvaluation(per_image, len(data), resumed, chunk, piece)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def attack_or_none_out_of_memory(attack: AttributionAttack, model: nn.Module, x: Tensor, y: Tensor,
                                 on_step: Callable[[], None]) -> AttributionAttackResult | None:
    """The attack's result on one piece, or None when the device ran out of memory (a single image: raised)."""
    try:
        return attack.run(model, x, y, on_step=on_step)
    except torch.cuda.OutOfMemoryError:
        if len(x) == 1:
            raise
        return None


def smaller_pieces(failed: int, store: MeasureStore, chunk: int) -> int:
    """After `failed` images ran out of device memory: half as many per piece from now on (recorded in the store)."""
    piece = failed // 2
    store.record(chunk, piece)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.warning("out of device memory with %d images per chunk: continuing with %d (set "
                "eval.attribution_batch_size=%d to start there)", failed, piece, piece)
    return piece


def stopped(signal_name: str, when: str, attack: str, then: str = "resume") -> str:
    return (f"stopped by {signal_name} {when} of {attack} (their measures are saved); run the same command again "
            f"in the same folder (hydra.run.dir=...) to {then}")


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
    return " ".join(f"{m.title}={m.scale * done[m.column].mean():.3g}{m.unit}" for m in metrics[:2])


def _per_image(ids: Tensor, y: Tensor, result: AttributionAttackResult, metrics: list[Metric],
               k: int) -> pd.DataFrame:
    scores = {name: value.double() for name, value in score(result, metrics, k).items()}  # float64: a CSV round
    columns = {"index": ids, "label": y, "qualified": result.qualified, "moved": result.moved,  # trip is exact
               "support_covered": result.support_covered, **scores}
    return pd.DataFrame({name: value.detach().cpu().numpy() for name, value in columns.items()})
