"""The template most attribution-robust training methods after RAR fit: CE + weight * D(A(x), A(x')) (plus
`extra_weight` * a second dissimilarity, for LGA's two terms).

A is any registered explainer (`explainer`, the attribution of the true class, differentiated with respect to the
weights: second order), D a differentiable dissimilarity of the two maps, flattened per example (`distance`):
- `cosine`: 1 - cos(a, b);  `pearson`: 1 - Pearson's r;  `l1`: sum |a - b|;  `squared_l2`: sum (a - b)^2;
- `kl`: KL(softmax(a) || softmax(b)), the maps as distributions over their entries.
x' (`inner`): `pgd` maximises the penalty over the eps-ball (or CE(x') + the penalty with
`inner_maximises: loss`, IG-SUM-NORM's form), or `random` draws x' uniformly from the ball once.
The cross-entropy is taken at x (`ce_at: clean`) or at x' (`perturbed`, the adversarial variants). The inner
direction goes through the explainer's input gradient, which a piecewise-linear network does not have (its second
derivative is zero): `surrogate_beta` computes the inner maximisation on the softplus copy of the network (same
weights), as the attacks on explanations do; the outer loss always uses the network itself.

With weight 0 this is natural training (`ce_at: clean`), or PGD training (`ce_at: perturbed`, `inner: pgd`,
`inner_maximises: loss`). The presets name the methods whose objective it can express; what each follows and what is
uncertain is in its preset's leading comment (`attrobust list`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attacks.projected_ascent import LinfBall
from attrobust.attributions import softplus_surrogate
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS, Explainer
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput, reduce
from attrobust.models.normalize import traits_of

Distance = Literal["cosine", "pearson", "l1", "squared_l2", "kl"]
Inner = Literal["pgd", "random"]
TINY = 1e-12  # keeps cosine and Pearson finite on an all-zero map


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    return 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(TINY)


def pearson_distance(a: Tensor, b: Tensor) -> Tensor:
    return cosine_distance(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))


def kl_distance(a: Tensor, b: Tensor) -> Tensor:
    log_p, log_q = F.log_softmax(a, dim=1), F.log_softmax(b, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


DISTANCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": cosine_distance, "pearson": pearson_distance, "l1": lambda a, b: (a - b).abs().sum(1),
    "squared_l2": lambda a, b: (a - b).pow(2).sum(1), "kl": kl_distance}


@REGULARIZERS.register("attribution_distance")
@dataclass(frozen=True)
class AttributionDistance(AdversarialObjective):
    weight: float = 1.0
    explainer: str = "gradient"
    explainer_steps: int | None = None  # IG's path points or SmoothGrad's samples (null: the explainer's default)
    distance: Distance = "cosine"
    extra_distance: Distance | None = None  # a second dissimilarity, added with `extra_weight` (LGA: cosine)
    extra_weight: float = 0.0
    inner: Inner = "pgd"
    inner_maximises: Literal["distance", "loss"] = "distance"
    ce_at: Literal["clean", "perturbed"] = "clean"
    detach_clean_map: bool = False     # LGA's default: A(x) is a fixed target, only A(x') is trained
    surrogate_beta: float | None = 1.0  # the inner maximisation on the softplus copy (None: the network itself)
    second_order: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        for key in ("distance", "extra_distance"):
            value = getattr(self, key)
            if value is not None and value not in DISTANCES:
                raise ValueError(f"{key} must be one of {', '.join(DISTANCES)}, got '{value}'")
        if self.extra_weight < 0 or (self.extra_weight and self.extra_distance is None):
            raise ValueError(f"extra_weight must be >= 0 and needs extra_distance, got {self.extra_weight} with "
                             f"extra_distance={self.extra_distance}")
        trainable = [name for name in EXPLAINERS.names() if EXPLAINERS.get(name).differentiable]
        if self.explainer not in trainable:
            raise ValueError(f"explainer must be one of the differentiable explainers {', '.join(trainable)}, got "
                             f"'{self.explainer}'")
        if self.explainer_steps is not None and self.explainer_steps < 1:
            raise ValueError(f"explainer_steps must be >= 1 or null, got {self.explainer_steps}")
        _ = self.built_explainer  # its own settings are checked now, not in the first training step
        if self.surrogate_beta is not None and not self.surrogate_beta > 0:
            raise ValueError(f"surrogate_beta must be positive or null, got {self.surrogate_beta}")

    @functools.cached_property
    def built_explainer(self) -> Explainer:
        """A, built once from `explainer` and `explainer_steps` (checked in __post_init__)."""
        settings: dict[str, object] = {"name": self.explainer}
        if self.explainer_steps is not None:
            names = {f.name for f in dataclasses.fields(EXPLAINERS.get(self.explainer))}
            key = next((k for k in ("steps", "samples") if k in names), None)
            if key is None:
                raise ValueError(f"explainer_steps: the {self.explainer} explainer has no steps or samples")
            settings[key] = self.explainer_steps
        return EXPLAINERS.build(settings)

    def check_model(self, model: nn.Module) -> None:
        """A layer-reading explainer (Grad-CAM) trains only a model that names its layer: training has no key to name
        one (`explainer.layer` belongs to evaluate, attack and explain)."""
        if getattr(self.built_explainer, "layer", "") is None and traits_of(model).cam_layer is None:
            raise AttrobustError(f"reg.explainer={self.explainer} reads the layer the model names, and this model "
                                 f"names none; train it with another reg.explainer (e.g. gradient), or a model that "
                                 f"names its layer (madry_cnn, rar_resnet, resnet18)")
        self.built_explainer.check_model(model)

    def maps(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """A(x) flattened per example, differentiable with respect to the weights and to x."""
        return self.built_explainer.explain(model, x, y, create_graph=True).flatten(1)

    @property
    def penalised(self) -> bool:
        return bool(self.weight or self.extra_weight)

    def penalty(self, a: Tensor, b: Tensor) -> Tensor:
        """Per example: weight * D(a, b) + extra_weight * D_extra(a, b)."""
        value = self.weight * DISTANCES[self.distance](a, b)
        if self.extra_distance is not None and self.extra_weight:
            value = value + self.extra_weight * DISTANCES[self.extra_distance](a, b)
        return value

    def perturbed(self, model: nn.Module, x: Tensor, y: Tensor, clean_map: Tensor | None) -> Tensor:
        """x' by `inner` (detached); `clean_map` (A(x)) is needed by `inner: pgd` only. (No `none`: x' = x would make
        every distance 0 whatever the weight.)"""
        ball = LinfBall(x, self.eps)
        if self.inner == "random":
            return ball.sample()

        assert clean_map is not None

        def objective(z: Tensor) -> Tensor:
            if self.inner_maximises == "loss" and not self.penalised:
                return F.cross_entropy(model(z), y, reduction="none")  # PGD training's inner maximisation
            penalty = self.penalty(clean_map.detach(), self.maps(model, z, y))
            if self.inner_maximises == "distance":
                return penalty
            return F.cross_entropy(model(z), y, reduction="none") + penalty

        smooth = softplus_surrogate(model, self.surrogate_beta) if self.surrogate_beta else nullcontext()
        with smooth:
            return self.inner_maximum(objective, x)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        clean_map = self.maps(model, x, y) if self.penalised or self.inner == "pgd" else None
        x_adv = self.perturbed(model, x, y, clean_map)
        logits = model(x) if self.ce_at == "clean" else None
        ce_logits = logits if logits is not None else model(x_adv)
        ce = F.cross_entropy(ce_logits, y, reduction="none")
        if logits is None:
            with torch.no_grad():
                logits = model(x)
        terms = {"ce": ce.detach().mean(), "eps": x.new_full((), self.eps)}
        if not self.penalised:
            return LossOutput(reduce(ce, self.reduction), logits, terms)
        assert clean_map is not None
        target = clean_map.detach() if self.detach_clean_map else clean_map
        penalty = self.penalty(target, self.maps(model, x_adv, y))
        terms["penalty"] = penalty.detach().mean()
        return LossOutput(reduce(ce + penalty, self.reduction), logits, terms)
