"""Attacks on explanations (Ghorbani, Abid, Zou, AAAI 2019), as the RAR reference code runs them, on whole batches,
for any registered explainer (`explainer=ig|gradient|grad_x_input|smoothgrad|gradcam`).

Saliency: the explainer's attribution of the true class (IG of the true-class logit from a zero baseline with the
dataset's `ig_steps` by default, the reference's), |attribution| summed over channels and normalised to sum h*w
(`attrobust.attributions.saliency_map`). Each step, as in the reference (`ig_attack.py`):
  1. direction: the sign of the gradient, with respect to the current iterate, of the attack's objective on the
     saliency, taken on the smooth surrogate of the network (same weights; second order through the explainer) when
     the explainer needs it (all gradient-based ones do on a piecewise-linear network);
  2. x_t <- x + clip(x_t + step_size * direction - x, -eps, eps), then clip to [0, 1];
  3. measure on the original network: if the predicted label changed the iterate does not count (and its saliency
     map is not computed), else the selection criterion (Kendall's tau by default) between the original and the
     iterate's saliency; the iterate with the lowest criterion below that of identical maps is kept. The attack
     continues from x_t either way, as the reference does.
The kept iterate's map is then scored by the configured metrics (`eval.metrics`; attrobust.engine.attribution). An
image with no counted iterate keeps its original map, so it scores what identical maps score (the reference's
"unqualified" (1, 1, 1)); `qualified` says which images had one, for the strict accounting.
The criterion (`measure`) is any registered metric, or the reference's `mass_center` (attrobust/attacks/selection.py).
Restarts keep, per image, the restart with the lowest criterion
(`restarts_by: measure`); `restarts_by: kendall` keeps the reference's choice by the lowest Kendall whatever the
measure (the same with the default `measure: kendall`). Deterministic attacks (no random start) run once.

A model whose activations have no smooth surrogate and no second derivative (ReLU6, Hardtanh, FullSort, ...) is
refused before any work (`check_model`), instead of giving a zero direction and unmoved images scored as robust
(`evaluate` and `attack` then estimate the direction instead, `direction=estimated`).

Pitfall (measured on mnist_mini): IG from a zero baseline is exactly 0 on black pixels, so when the top-k set covers
all nonzero saliency the top-k objective is constant, its gradient is exactly zero and the image never moves
("unmoved"; the reference scores it as perfectly robust), or, when the loss is not exactly constant in floating
point, it follows rounding noise. `support_covered` flags these images (k >= nonzero saliency pixels).
`random_start: true` (not in the reference) starts from a uniform point of the eps-ball instead; results record which
was used and how many images stayed unmoved.

Batching: every image has its own masks and bookkeeping; all images of a chunk (and all their IG path points or
noise samples) go through the network together. Deterministic attacks drop an image once a step leaves its iterate
in place (a fixed point: every later step would repeat that step exactly; `skip_converged`), so images with a zero
gradient (unmoved, above) cost one step instead of `steps`. Shapes: x (B, C, H, W) in [0, 1], y (B,) ->
AttributionAttackResult with per-image tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
import dataclasses
from functools import cached_property
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from attrobust.attacks.budget import Patience, check_settings
from attrobust.attacks.estimated import nes_direction
from attrobust.attacks.fits import auto_top_k, check_fits
from attrobust.attacks.iterates import AttributionAttackResult, BestIterates, Reference, keep_stronger
from attrobust.attacks.projected_ascent import LinfBall, Rows, pixel_amount, projected_ascent
from attrobust.attacks.selection import MASS_CENTER, OLD_MEASURES, criterion, selection_metric, untouched
from attrobust.attributions import check_smoothable, saliency_map, softplus_surrogate
from attrobust.explainers.base import Explainer, NotDifferentiable
from attrobust.explainers.ig import IntegratedGradientsExplainer
from attrobust.metrics import Metric, center_of_mass, top_k_mask
from attrobust.metrics.ranks import kendall_of_maps



@dataclass(frozen=True)
class AttributionAttack:
    """Settings shared by every attribution attack; subclasses define the objective the step ascends."""

    eps: float
    steps: int
    step_size: float
    k: int | None = 200          # None: `auto_top_k` of the map (resolved by `sized_for`)
    eval_k: int | None = 100
    measure: str = "kendall"     # the selection: a registered metric, or mass_center (see the module doc)
    restarts_by: Literal["measure", "kendall"] = "measure"  # kendall: the reference's restart choice
    restarts: int = 3
    random_start: bool = False
    surrogate_beta: float = 1.0
    skip_converged: bool = True  # stop computing an image at a fixed point of a deterministic attack (same result)
    direction: Literal["analytic", "estimated"] = "analytic"  # estimated: NES probes, no second derivative
    probes: int = 50             # antithetic pairs of Gaussian probes per step (direction=estimated)
    probe_radius: float = 1e-3   # their standard deviation, in pixels of [0, 1]
    direction_points: int | None = None  # explainer passes for the direction only (attacks/budget.py); None: its own
    patience: int | None = None  # stop an image after this many steps without a better criterion; None: never
    selection_points: int | None = None  # explainer passes for the maps that select iterates; None: its own
    explainer: Explainer = field(default_factory=IntegratedGradientsExplainer)  # set by the command (explainer=)

    def __post_init__(self) -> None:
        check_settings(self)
        object.__setattr__(self, "measure", OLD_MEASURES.get(self.measure, self.measure))

    def sized_for(self, height: int, width: int) -> AttributionAttack:
        """This attack with a `k` / `eval_k` of None set to `auto_top_k` of a `height` x `width` map."""
        auto = auto_top_k(height * width)
        return dataclasses.replace(self, k=auto if self.k is None else self.k,
                                   eval_k=auto if self.eval_k is None else self.eval_k)

    def check_fits(self, height: int, width: int, key: str) -> None:
        """Refuse, in one line, a top-k or a selection that cannot work on `height` x `width` maps (attacks/fits.py;
        `key`: where the attack is configured, e.g. attack)."""
        check_fits(self, height, width, key)

    def check_model(self, model: nn.Module) -> None:
        """Refuse, with one line and before any work, a model this attack cannot differentiate through: the
        explainer cannot read it, or the direction needs a smooth surrogate that one of its activations lacks."""
        self.explainer.check_model(model)
        if self.ascends and not self.explainer.differentiable and self.direction == "analytic":
            raise NotDifferentiable(self.explainer.registry_name, f"attack {self.name}")
        if self.ascends and self.explainer.needs_surrogate and self.direction == "analytic":
            check_smoothable(model, f"attack {self.name} with explainer {self.explainer.registry_name}")

    # -- what subclasses change -------------------------------------------------------------------------------
    registry_name: ClassVar[str] = ""
    deterministic: ClassVar[bool] = True          # no randomness inside the steps: identical restarts are skipped
    ascends: ClassVar[bool] = True                # the direction is a gradient of the objective (second order)
    needs_surrogate_center: ClassVar[bool] = False
    draws_centers: ClassVar[bool] = False         # figures mark both maps' centres of mass (mass_center)

    def region_pixels(self, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The region the attack pushes saliency into, as (top, bottom, left, right) pixels, for figures; None."""
        return None

    def objective(self, surrogate_saliency: Tensor, reference: Reference) -> Tensor:
        """Per-image score whose gradient sign is the step direction (to be maximised)."""
        raise NotImplementedError

    def step_direction(self, model: nn.Module, x: Tensor, reference: Reference) -> Tensor:
        """sign(d objective / d x): analytic (on the smooth surrogate when the explainer needs it, second order) or
        estimated (`estimated_direction`)."""
        if self.direction == "estimated":
            return self.estimated_direction(model, x, reference)
        smooth = softplus_surrogate(model, self.surrogate_beta) if self.explainer.needs_surrogate else nullcontext()
        with smooth, torch.enable_grad():
            x = x.detach().requires_grad_(True)
            attributions = self.direction_explainer.explain(model, x, reference.label, create_graph=True)
            score = self.objective(saliency_map(attributions), reference)
            (grad,) = torch.autograd.grad(score.sum(), x)
        return grad.sign()

    def propose(self, model: nn.Module, current: Tensor, reference: Reference) -> Tensor:
        """The next iterate before projection: a signed step along `direction` (random_noise draws instead)."""
        return current + self.step_size * self.step_direction(model, current, reference)

    def estimated_direction(self, model: nn.Module, x: Tensor, reference: Reference) -> Tensor:
        """The sign of the NES estimate of d objective / d x (attrobust/attacks/estimated.py)."""
        return nes_direction(self, model, x, reference)

    @cached_property
    def direction_explainer(self) -> Explainer:
        """The explainer of the attack's direction: the scored one, with `direction_points` passes when set."""
        return self.explainer if self.direction_points is None else self.explainer.with_passes(self.direction_points)

    @cached_property
    def selection_explainer(self) -> Explainer:
        """The explainer of the maps that select the kept iterate (`selection_points`); the kept map is then
        recomputed with the scored one."""
        return self.explainer if self.selection_points is None else self.explainer.with_passes(self.selection_points)

    # -- the shared algorithm ---------------------------------------------------------------------------------
    @property
    def restarts_to_run(self) -> int:
        """`restarts`, or 1 for a deterministic attack from the image itself: its restarts would be identical."""
        return 1 if self.deterministic and not self.random_start else self.restarts

    def describe(self) -> str:
        start = " random-start" if self.random_start else ""
        if self.restarts_to_run > 1:
            runs = f" worst of {self.restarts_to_run} restarts"
        else:
            runs = " 1 run (deterministic)" if self.deterministic and not self.random_start else " 1 run"
        estimated = f" estimated({self.probes} probes)" if self.direction == "estimated" and self.ascends else ""
        budget = [f"direction {self.direction_explainer.describe()}" if self.direction_points and self.ascends else "",
                  f"selection {self.selection_explainer.describe()}" if self.selection_points else "",
                  f"patience {self.patience}" if self.patience and self.ascends else ""]
        cheaper = "".join(f" {knob}" for knob in budget if knob)
        return (f"{self.name} of {self.explainer.describe()} eps={pixel_amount(self.eps)} {self.steps}x"
                f"{pixel_amount(self.step_size)} "
                f"k={self.k}{start}{estimated}{cheaper}{runs}")

    @property
    def name(self) -> str:
        return self.registry_name

    def saliency(self, model: nn.Module, x: Tensor, y: Tensor, explainer: Explainer | None = None) -> Tensor:
        """The saliency map of the model (the original network, not the surrogate) by `explainer` (default: the
        scored one): (B, H*W)."""
        return saliency_map((explainer or self.explainer).explain(model, x, y)).detach()

    def reference(self, model: nn.Module, x: Tensor, y: Tensor) -> Reference:
        saliency = self.saliency(model, x, y)
        size = (x.shape[-2], x.shape[-1])
        center = None
        if self.measure == MASS_CENTER or self.needs_surrogate_center:
            with softplus_surrogate(model, self.surrogate_beta):
                center = center_of_mass(self.saliency(model, x, y), size).floor()
        return Reference(x, y, saliency, top_k_mask(saliency, min(self.k, saliency.shape[1])), size, center)

    @cached_property
    def selection(self) -> Metric | None:
        """The metric that selects iterates and restarts (attrobust/attacks/selection.py; None: mass_center)."""
        return selection_metric(self.measure)

    @property
    def untouched(self) -> float:
        return untouched(self.selection)

    def criterion(self, reference: Reference, saliency: Tensor) -> Tensor:
        return criterion(self.selection, reference, saliency, self.k)

    def run(self, model: nn.Module, x: Tensor, y: Tensor,
            on_step: Callable[[], None] | None = None) -> AttributionAttackResult:
        """Attack a batch of correctly classified images; `model` should be in eval mode. `on_step` is called after
        each step (of `steps` x `restarts_to_run`; fewer when every image reached a fixed point early)."""
        reference = self.reference(model, x, y)
        selecting = reference if self.selection_explainer == self.explainer else \
            dataclasses.replace(reference, saliency=self.saliency(model, x, y, self.selection_explainer))
        restarts = self.restarts_to_run
        best: AttributionAttackResult | None = None
        for _ in range(restarts):
            outcome = self._run_once(model, reference, selecting, on_step or (lambda: None))
            best = outcome if best is None else keep_stronger(best, outcome)
        assert best is not None
        return AttributionAttackResult(**{**best.__dict__, "restarts_run": restarts})

    def _run_once(self, model: nn.Module, reference: Reference, selecting: Reference,
                  on_step: Callable[[], None]) -> AttributionAttackResult:
        """One run of the reference's loop (the module doc) in `projected_ascent`: `propose` steps, the ball projects
        as the reference does, and after each step the iterates that kept their label are offered to `best`, by their
        criterion against `selecting` (the reference, or its maps by the selection explainer)."""
        x0 = reference.image
        n = x0.shape[0]
        ball = LinfBall(x0, self.eps, by_offset=True)
        best = BestIterates.none_yet(reference, self.untouched)
        moved = torch.zeros(n, dtype=torch.bool, device=x0.device)
        everyone = torch.arange(n, device=x0.device)
        patience = Patience.start(self.patience if self.ascends else None, n, x0.device)

        def of(rows: Rows, whole: Reference = reference) -> Reference:
            return whole if rows is None or len(rows) == n else whole.select(rows)

        def after(current: Tensor, new: Tensor, rows: Rows) -> Rows:
            active, ref = everyone if rows is None else rows, of(rows)
            moved[active] |= (new != ref.image).flatten(1).any(1)
            with torch.inference_mode():
                same_label = model(new).argmax(1) == ref.label
            # the one wait for the device per step: which iterates count (label kept: only they need a saliency
            # map, the others cannot be kept) and which moved (the others are fixed points)
            counted, changed = torch.stack([same_label, (new != current).flatten(1).any(1)]).cpu()
            kept = counted.nonzero().flatten().to(x0.device)
            before = None if patience.limit is None else best.criterion[active].clone()
            if len(kept):
                saliency = self.saliency(model, new[kept], ref.label[kept], self.selection_explainer)
                criterion = self.criterion(of(rows, selecting).select(kept), saliency)
                best.offer(active[kept], criterion, new[kept], saliency)
            on_step()
            # an iterate the step left in place is a fixed point: every later step would repeat this one
            skipping = self.skip_converged and self.deterministic
            going = changed if skipping else torch.ones_like(changed)
            if before is not None:  # and an image out of patience is done
                going = going & patience.going_on(active, before, best.criterion[active]).cpu()
            return rows if not skipping and bool(going.all()) else active[going.to(x0.device)]

        start = ball.sample() if self.random_start else x0.clone()
        projected_ascent(lambda current, rows: self.propose(model, current, of(rows)), ball, self.steps, start, after)
        if selecting is not reference:
            self._draw_in_full(model, reference, best)
        return self._score(reference, best, moved)

    def _draw_in_full(self, model: nn.Module, reference: Reference, best: BestIterates) -> None:
        """The kept iterates' maps and criteria as the scored explainer draws them (`selection_points`); an iterate
        that is no longer below `untouched` by them is dropped (the image keeps its original map)."""
        kept = (best.criterion < self.untouched).nonzero().flatten()
        if len(kept):
            best.saliency[kept] = self.saliency(model, best.image[kept], reference.label[kept])
            best.criterion[kept] = self.criterion(reference.select(kept), best.saliency[kept]).to(best.criterion)
            lost = kept[best.criterion[kept] >= self.untouched]
            best.image[lost], best.saliency[lost] = reference.image[lost], reference.saliency[lost]

    def _score(self, reference: Reference, best: BestIterates, moved: Tensor) -> AttributionAttackResult:
        original, qualified = reference.saliency, best.criterion < self.untouched
        one = torch.ones(original.shape[0], dtype=torch.float64, device=original.device)
        kendall = torch.where(qualified, kendall_of_maps(original, best.saliency), one)
        criterion = kendall if self.restarts_by == "kendall" else \
            torch.where(qualified, self.criterion(reference, best.saliency), self.untouched * one)
        return AttributionAttackResult(
            perturbed=best.image, original_saliency=original, perturbed_saliency=best.saliency, kendall=kendall,
            criterion=criterion,
            qualified=qualified, moved=moved, image_size=reference.image_size,
            support_covered=(original > 0).sum(1) <= min(self.k, original.shape[1]))
