"""`attrobust explain`: the maps of the configured explainer for chosen test images of a trained model."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig
from torch import Tensor

from attrobust.atomic import save_torch_atomic
from attrobust.attributions import saliency_map
from attrobust.data.base import ImageSet
from attrobust.engine.attribution import auto_batch_size
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.reporting.figures import explanation_figure
from attrobust.rundir import Job
from attrobust.tasks.restore import TrainedModel, load_trained

log = logging.getLogger("attrobust")


def explain(cfg: DictConfig, job: Job) -> None:
    """The maps of `cfg.explainer` for the selected test images of a checkpoint (eval.indices, classes, sample,
    num_examples; without any, the first `figure_examples`), of the true class: `maps.pt` (index, label, prediction,
    attributions (N, C or 1, H, W), saliency (N, H, W) normalised to a pixel mean of 1) and `maps.png` (the first
    `figure_examples` images)."""
    trained = load_trained(cfg)
    if trained.eval_settings.shard is not None or trained.eval_settings.num_shards != 1:
        raise AttrobustError("eval.shard / eval.num_shards split `evaluate` and `attack`; `explain` draws its maps "
                             "whole (choose images with eval.indices, eval.sample or eval.num_examples)")
    explainer = EXPLAINERS.build(trained.config.explainer_cfg)
    explainer.check_model(trained.model)
    test = explained_images(trained)
    job.mark_started()
    run_dir = job.run_dir
    maps = {"index": test.index, "label": test.labels, "explainer": explainer.describe(),
            **explain_images(trained, explainer, test)}
    save_torch_atomic(maps, run_dir / "maps.pt")
    shown = min(trained.settings.figure_examples, len(test))
    for name in ("maps.png", "maps.pdf"):  # an earlier run's figure must not stand beside these maps
        (run_dir / name).unlink(missing_ok=True)
    explanation_figure(test.images[:shown].float() / 255, maps, shown, run_dir / "maps.png",
                       trained.figure_title(f"{explainer.describe()} of the true class"),
                       overlay=explainer.registry_name == "gradcam")
    log.info("wrote the %s maps of %d test images to %s (maps.pt%s)", explainer.describe(), len(test), run_dir,
             ", maps.png" if shown else "; no maps.png with figure_examples=0")


def explained_images(trained: TrainedModel) -> ImageSet:
    """The images chosen by eval.indices, classes, sample or num_examples; without any, the first
    `figure_examples`."""
    settings = trained.eval_settings
    if any(getattr(settings, key) is not None for key in ("indices", "classes", "sample", "num_examples")):
        return trained.test
    if trained.settings.figure_examples == 0:
        raise AttrobustError("figure_examples=0 with no images chosen leaves explain nothing to explain; set "
                             "figure_examples=N, or choose images with eval.indices, eval.classes, eval.sample or "
                             "eval.num_examples")
    test = trained.test.head(trained.settings.figure_examples)
    log.info("explaining the first %d test images (choose others with eval.indices, eval.classes, eval.sample or "
             "eval.num_examples)", len(test))
    return test


def explain_images(trained: TrainedModel, explainer: Explainer, test: ImageSet) -> dict[str, Tensor]:
    """Prediction, attributions and saliency of every image, in chunks sized for the device."""
    device = trained.device
    chunk = trained.eval_settings.attribution_batch_size or auto_batch_size(device, explainer.passes_per_image)
    pieces: dict[str, list[Tensor]] = {"attributions": [], "saliency": [], "prediction": []}
    for start in range(0, len(test), chunk):
        x, y = test.batch(slice(start, start + chunk), device)
        with torch.inference_mode():
            pieces["prediction"].append(trained.model(x).argmax(1).cpu())
        attributions = explainer.explain(trained.model, x, y).detach()
        pieces["attributions"].append(attributions.float().cpu())
        pieces["saliency"].append(saliency_map(attributions).view(len(y), *x.shape[-2:]).float().cpu())
    return {key: torch.cat(value) for key, value in pieces.items()}
