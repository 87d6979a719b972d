"""ERAR (Sarkar, Sarkar, Balasubramanian, AAAI 2021, "Enhanced Regularizers for Attributional Robustness"), as its
public code implements it (github anirbansarkar-cs/Enhanced_regularizers_attributional_robustness, Flower/model.py:
`BaseAttr`, `TNCA_Attr`, `comp_attr_shift`, `kl_divergence`; the loss `adv_loss_with_IG_regularizer`).

x* is IG-SUM-NORM's: PGD maximising CE(x') + weight * ||IG_CE(x -> x')||_1 with ig_steps / approx_factor points. The
outer loss of each example is CE(x*) + weight * R, where, with m = ig_steps right-Riemann points and p = softmax(f):
- B = IG of p_y from a zero baseline to x (signed, per channel): the attribution of the natural image;
- C = -IG of CE(., y) from x to x* (RAR's term, sign flipped): how the attack changed the attribution;
- TCA, NCA = softmax over the H*W pixels of the channel-summed IG of p_y, resp. p_n, from a zero baseline to x*, where
  n is the most probable class other than y, chosen at each path point (top-1 if it is not y, else top-2);
- KL_T, KL_N = KL(U || TCA), KL(U || NCA), U the uniform map 1/(H*W);
- R = (KL_N - KL_T) + sum over entries where sign(B) != sign(C) of |C| + sum over entries where sign(B) == sign(C)
  of B * C (entries: channels x pixels; sign(0) matches only 0).
All terms are differentiated with respect to the weights (second order), as in the reference. With `reduction: sum`
the per-example losses are summed over the batch, as the reference's sums over batch x H x W x C do; weight decay is
the optimiser's (`optim.weight_decay`). With weight 0 this is IG-SUM-NORM at weight 0 (PGD training).

Deliberate differences, each one override from the reference: `true_class_kl: reference` (the default) keeps -KL_T,
which is unbounded below (the loss can keep falling by making TCA ever more peaked); `bounded` uses -KL(TCA || U)
instead, which is at least -log(H*W) and also rewards a peaked true-class map. The IG of the cross-entropy is
attrobust's exact one (the reference clips the softmax at 1e-10 inside it), as in IG-NORM and IG-SUM-NORM.

Uncertain: the paper's results table could not be read, and the public code covers Flower-17 only; the settings for
the other datasets are RAR's (see the rar_<dataset>_erar presets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attributions import cross_entropy_of, integrated_gradients
from attrobust.attributions.integrated_gradients import probability_of, tiled
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.base import LossOutput, reduce
from attrobust.regularizers.ig_sum_norm import IGSumNorm

TrueClassKL = Literal["reference", "bounded"]
TRUE_CLASS_KLS: tuple[TrueClassKL, ...] = ("reference", "bounded")


def strongest_other_probability(model: nn.Module, labels: Tensor) -> Callable[[Tensor], Tensor]:
    """`fn` for IG: each row's probability of its most probable class other than the label, chosen at that row
    (the reference's top-1 if it is not the label, else top-2); the choice itself is not differentiated."""
    def fn(z: Tensor) -> Tensor:
        probabilities = F.softmax(model(z), dim=1)
        top2 = probabilities.detach().topk(2, dim=1).indices
        other = torch.where(top2[:, 0] == tiled(labels, z.shape[0]), top2[:, 1], top2[:, 0])
        return probabilities.gather(1, other.unsqueeze(1)).squeeze(1)
    return fn


def pixel_distribution_log(attributions: Tensor) -> Tensor:
    """log softmax over the H*W pixels of the channel-summed signed attributions: (B, C, H, W) -> (B, H*W)."""
    return F.log_softmax(attributions.sum(1).flatten(1), dim=1)


def kl_from_uniform(log_q: Tensor) -> Tensor:
    """KL(U || q) per row, U uniform over the row's n entries: sum U log(U / q) = -log n - mean(log q)."""
    return -math.log(log_q.shape[1]) - log_q.mean(1)


def kl_to_uniform(log_q: Tensor) -> Tensor:
    """KL(q || U) per row: sum q (log q + log n), in [0, log n]."""
    return (log_q.exp() * (log_q + math.log(log_q.shape[1]))).sum(1)


def attribution_shift(base: Tensor, change: Tensor) -> tuple[Tensor, Tensor]:
    """Per example: sum of |change| where sign(base) != sign(change), and sum of base * change where they agree."""
    agree = torch.sign(base) == torch.sign(change)
    mismatched = torch.where(agree, torch.zeros_like(change), change.abs()).flatten(1).sum(1)
    matched = torch.where(agree, base * change, torch.zeros_like(change)).flatten(1).sum(1)
    return mismatched, matched


@dataclass(frozen=True)
class ERARTerms:
    """ERAR's regulariser per example, and its parts (each (B,))."""

    kl_true: Tensor      # KL(U || TCA) (reference) or KL(TCA || U) (bounded)
    kl_negative: Tensor  # KL(U || NCA)
    mismatched: Tensor   # sum of |C| where sign(B) != sign(C)
    matched: Tensor      # sum of B * C where sign(B) == sign(C)

    @property
    def total(self) -> Tensor:
        return (self.kl_negative - self.kl_true) + self.mismatched + self.matched


@REGULARIZERS.register("erar")
@dataclass(frozen=True)
class ERAR(IGSumNorm):
    weight: float = 0.1
    true_class_kl: TrueClassKL = "reference"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.true_class_kl not in TRUE_CLASS_KLS:
            raise ValueError(f"true_class_kl must be one of {', '.join(TRUE_CLASS_KLS)}, got '{self.true_class_kl}'")

    def terms(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> ERARTerms:
        """B, C, TCA and NCA with all ig_steps points, differentiable with respect to the weights."""
        ig = {"steps": self.ig_steps, "create_graph": True, "max_points": self.max_points,
              "recompute": self.recompute}
        base = integrated_gradients(probability_of(model, y), x, **ig)
        change = -integrated_gradients(cross_entropy_of(model, y), x_adv, baseline=x, **ig)
        true_log = pixel_distribution_log(integrated_gradients(probability_of(model, y), x_adv, **ig))
        negative_log = pixel_distribution_log(integrated_gradients(strongest_other_probability(model, y), x_adv, **ig))
        kl_true = kl_from_uniform(true_log) if self.true_class_kl == "reference" else kl_to_uniform(true_log)
        mismatched, matched = attribution_shift(base, change)
        return ERARTerms(kl_true, kl_from_uniform(negative_log), mismatched, matched)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.inner_maximum(lambda z: self.inner_objective(model, x, y, z), x)
        adv_logits = model(x_adv)
        ce_adv = F.cross_entropy(adv_logits, y, reduction="none")
        with torch.no_grad():
            logits = model(x)
        log_terms = {"ce_adv": ce_adv.detach().mean(),
                     "acc_adv": (adv_logits.detach().argmax(1) == y).float().mean(), "eps": x.new_full((), self.eps)}
        if not self.weight:
            return LossOutput(reduce(ce_adv, self.reduction), logits, log_terms)
        parts = self.terms(model, x, x_adv, y)
        log_terms.update(kl_true=parts.kl_true.detach().mean(), kl_negative=parts.kl_negative.detach().mean(),
                         shift_mismatched=parts.mismatched.detach().mean(),
                         shift_matched=parts.matched.detach().mean())
        return LossOutput(reduce(ce_adv + self.weight * parts.total, self.reduction), logits, log_terms)
