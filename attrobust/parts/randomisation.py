"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, cascading
randomisation): the layers of the model are re-initialised one at a time from the top (logits) down, cumulatively,
and after each step every scored image's map is compared with its map on the trained model by each metric of
`eval.randomisation` (map metrics, attrobust.metrics: `spearman` of the saliency maps, which are absolute values
summed over channels, is the paper's rank correlation of absolute maps; `ssim` its structural similarity). An
explanation that depends on what the model learned changes: a similarity that stays near that of identical maps as
layers are randomised is the failure the paper reports (for Guided Backprop, for example).

A layer is a module that owns parameters and can re-initialise them (`reset_parameters`: PyTorch's initialisation,
the paper's "randomly initialised network of the same architecture"), in reverse order of definition; each one's
fresh weights are drawn on the CPU from a seed of (`seed`, layer), so every shard and device draws the same network.
Targets are the labels of the correctly classified images scored (the images every scoring part shares). Batched:
one explainer call per chunk of images per cascade step; no per-image loop.

Per-image columns and result rows: `<metric>@<layer>` (the metric once every layer from the top down to <layer> is
random; the table heads it '<heading> @<layer>').
Uncertain: the paper randomises blocks of Inception v3 (a block at a time); here each parameterised module is one
step, and normalisation layers count as layers.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.attributions import saliency_map
from attrobust.engine import cost
from attrobust.engine.attribution import auto_batch_size, correctly_classified
from attrobust.engine.sharding import Shard, unit_seed
from attrobust.errors import AttrobustError
from attrobust.explainers.base import Explainer
from attrobust.metrics import METRICS, Metric
from attrobust.metrics.base import MapSpec
from attrobust.parts import PARTS
from attrobust.parts.base import ExplainingPart, Measured
from attrobust.registry import Registry
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")


@PARTS.register("randomisation")
class Randomisation(ExplainingPart):
    file: ClassVar[str] = "randomisation.csv"
    position: ClassVar[int] = 50
    eval_keys: ClassVar[tuple[str, ...]] = ("randomisation",)
    setting: ClassVar[str | None] = "randomisation"
    measures: ClassVar[Registry[Any] | None] = METRICS
    example: ClassVar[str] = "[spearman,ssim]"

    def __init__(self, metrics: list[Metric], explainer: Explainer) -> None:  # eval.randomisation's map metrics
        super().__init__(metrics, explainer)
        self.layers: list[str] = []
        self.randomised: nn.Module | None = None  # the copy whose layers are re-initialised (`prepare`)

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        super().prepare(trained, work_dir, shard)
        height, width = trained.test.images.shape[-2:]
        for metric in self.metrics:
            try:
                metric.check_fits(height, width)
            except ValueError as error:
                raise AttrobustError(f"eval.randomisation '{metric.column}': {error}") from error
        self.layers = cascade(trained.model)
        if not self.layers:
            raise AttrobustError("eval.randomisation: this model has no layer that can re-initialise its weights "
                                 "(reset_parameters), so it cannot be randomised; use eval.randomisation=[]")
        try:  # before any pass: a legacy weight-norm model holds derived weights after one, which cannot be copied
            self.randomised = copy.deepcopy(trained.model).eval()
        except RuntimeError as error:
            raise AttrobustError(f"eval.randomisation: this model cannot be copied to randomise its layers "
                                 f"({str(error).splitlines()[0]}); use eval.randomisation=[]") from error

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        return [cost.Part("randomisation", images * (len(self.layers) + 1) * times.explainer, "randomisation")]

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        model, device = trained.model, trained.device
        scored = trained.test.select(correctly_classified(model, trained.test, trained.eval_settings.batch_size))
        chunk = trained.eval_settings.attribution_batch_size or auto_batch_size(device,
                                                                                 self.explainer.passes_per_image)
        units = list(shard.units(len(scored), chunk))
        mine = torch.cat([torch.arange(a, b) for a, b in units]) if units else torch.zeros(0, dtype=torch.long)
        frame = pd.DataFrame({"index": scored.index[mine].numpy(), "label": scored.labels[mine].numpy()})
        height, width = scored.images.shape[-2:]
        spec = MapSpec((height, width), max(1, min(100, height * width // 8)))

        def maps(net: nn.Module, step: str) -> list[Tensor]:
            out = []
            for first, end in units:
                x, y = scored.batch(slice(first, end), device)
                torch.manual_seed(unit_seed(trained.seed, first, f"randomisation:{step}"))  # SmoothGrad's noise
                out.append(saliency_map(self.explainer.explain(net, x, y).detach()).to(torch.float64).cpu())
            return out  # on the CPU: a shard's maps of large images need not fit the device twice

        trained_maps = maps(model, "trained")
        randomised = self.randomised
        assert randomised is not None
        for layer in self.layers:
            randomise(randomised.get_submodule(layer), trained.seed, layer)
            randomised_maps = maps(randomised, layer)
            for metric in self.metrics:
                values = [metric(a, b, spec).cpu() for a, b in zip(trained_maps, randomised_maps, strict=True)]
                frame[f"{metric.column}@{layer}"] = torch.cat(values).numpy() if values else []
        log.info("randomisation of %s over %d layers on %d images: %s", self.explainer.describe(), len(self.layers),
                 len(frame), ", ".join(f"{m.title} {frame[f'{m.column}@{self.layers[-1]}'].mean():.4g} with every "
                                       f"layer random" for m in self.metrics))
        return Measured(frame)

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        metrics = {metric.column: metric for metric in cls.listed(record.eval)}
        base = asdict(lines[0][1])
        bootstrap = Bootstrap.of(record.eval, lines[0][1].seed)
        rows = []
        for column in frame.columns[2:]:  # <metric>@<layer>, the cascade's steps in order
            metric = metrics[column.split("@")[0]]
            low, high = bootstrap.interval(frame[column], metric.scale)
            rows.append({**base, "metric": column, "value": float(metric.scale * frame[column].mean()),
                         "unit": metric.unit, "n": int(frame[column].notna().sum()), "low": low, "high": high})
        rows.append({**base, "metric": "images_scored", "value": float(len(frame)), "unit": "count", "n": len(frame)})
        return pd.DataFrame(rows, columns=ROW_COLUMNS)


def cascade(model: nn.Module) -> list[str]:
    """The names of the model's layers that own parameters and can re-initialise them, from the top down."""
    return [name for name, module in reversed(list(model.named_modules()))
            if name and list(module.parameters(recurse=False)) and callable(getattr(module, "reset_parameters", None))]


def randomise(layer: nn.Module, seed: int, name: str) -> None:
    """Re-initialise `layer`'s own parameters with PyTorch's initialisation, drawn on the CPU from (seed, name)."""
    fresh = copy.deepcopy(layer).cpu()
    digest = hashlib.sha256(f"randomisation:{seed}:{name}".encode()).digest()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        fresh.reset_parameters()
    with torch.no_grad():
        for mine, new in zip(layer.parameters(recurse=False), fresh.parameters(recurse=False), strict=True):
            mine.copy_(new.to(mine.device, mine.dtype))
