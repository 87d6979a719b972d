"""ART (Singh, Kumari, Mangla, Sinha, Balasubramanian, Krishnamurthy, ECCV 2020, "Attributional Robustness Training
using Input-Gradient Spatial Alignment"), as its public CIFAR code implements it (github
nupurkmr9/Attributional-Robustness: cifar/cifar_robust_train.py, cifar/loss_art.py, cifar/saliency_pgd.py
`topk_alignment_saliency_attack`).

With s_y the true-class logit, s_o the largest other logit (chosen per example, not differentiated),
g_y = d s_y / dx and g_o = d s_o / dx (signed, per channel), and cos the cosine over all entries:
- x_adv (the alignment attack): a uniform random start in the eps-ball; a mask of the `k` entries of largest |g_y| at
  that start, on the network itself, fixed for all steps (by default the reference's share of the entries, 1000 of
  3072); then `steps` signed steps of `relative_step` * eps (the reference's 5/8) maximising
  softplus(cos(z, g_o) - cos(z, g_y)) over the masked entries of the iterate z and its gradients, on the softplus
  copy of the network (`surrogate_beta`, the reference's 50), projected on the ball and the pixel box.
- The outer loss of each example: CE(x_adv) on the network itself + `weight` (0.5) * the alignment loss, the mean over
  the example's clean and adversarial copies z in {x, x_adv} of softplus(d_ap - d_an), where d_ap is the larger of
  1 - cos(z, g_y) over the two copies' g_y and d_an the smaller of 1 - cos(z, g_o) over their g_o (the reference's
  hard mining across the clean/adversarial pair: the image is the anchor, the true-class gradient the positive, the
  strongest other class's the negative; no margin). The gradients are taken on the softplus copy and differentiated
  with respect to the weights (second order). There is no clean cross-entropy.
`reduction: mean` is the reference's (both terms are batch means).

Deliberate differences: the gradients are per-example logit gradients (the reference differentiates the batch mean,
a constant factor the cosine removes up to its 1e-8 guard, as long as no layer couples the examples) and are taken
with respect to the model's input in [0, 1] pixels, which for mnist_mini (mean 0, std 1) is the reference's normalised
input. The network runs in the mode the trainer set; the reference keeps its WideResNet in train mode during the
attack and the loss, so its BatchNorm couples the examples of a batch (and its running statistics move with the
attack's forward passes) and its dropout is on. Neither matters for `small_cnn`, which has no BatchNorm or dropout.
`eps_warmup_epochs` (the YAML's 3) is not in the reference; the attack's step stays `relative_step` of the current eps.

Uncertain: the paper's text could not be read, so the weight 0.5, the hard mining and beta 50 follow the code only;
the code covers CIFAR-10 and CUB (CUB uses the channel mean of absolute values), not MNIST, so the defaults scale the
CIFAR mask and step to each dataset (k and relative_step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.attacks.projected_ascent import LinfBall, pgd
from attrobust.attributions import softplus_surrogate
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.adversarial import AdversarialObjective
from attrobust.regularizers.base import LossOutput, Reduction, reduce

NORM_GUARD = 1e-8  # added to each norm in the loss's cosine, as the reference's `cosine_dist`
ATTACK_GUARD = 1e-6  # the attack's cosine (nn.CosineSimilarity(eps=1e-6) in the reference)
REFERENCE_MASK_SHARE = 1000 / 3072  # the reference's mask: 1000 of CIFAR's 3 x 32 x 32 entries
REFERENCE_STEP_OF_EPS = 5 / 8  # the reference's step 5/255 at eps 8/255


def true_and_strongest_other_gradients(model: nn.Module, z: Tensor, y: Tensor,
                                       create_graph: bool) -> tuple[Tensor, Tensor]:
    """(g_y, g_o), each (B, C*H*W): input gradients of the true logit and of the largest other logit (its class chosen
    per example, not differentiated). `z` must require grad."""
    logits = model(z)
    true_logit = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    other_logit = logits.scatter(1, y.unsqueeze(1), float("-inf")).max(1).values
    (g_y,) = torch.autograd.grad(true_logit.sum(), z, create_graph=create_graph, retain_graph=True)
    (g_o,) = torch.autograd.grad(other_logit.sum(), z, create_graph=create_graph)
    return g_y.flatten(1), g_o.flatten(1)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise <a, b> / ((|a| + 1e-8)(|b| + 1e-8))."""
    return (a * b).sum(1) / ((a.norm(dim=1) + NORM_GUARD) * (b.norm(dim=1) + NORM_GUARD))


def alignment_loss(images: Tensor, g_true: Tensor, g_other: Tensor) -> Tensor:
    """Per row of the stacked (2B, D) [clean; adversarial] copies: softplus(d_ap - d_an) with the hardest positive
    and negative over the row's own gradients and its partner's (the other copy of the same example)."""
    partner = torch.arange(len(images), device=images.device).roll(len(images) // 2)
    d_ap = torch.maximum(1 - cosine(images, g_true), 1 - cosine(images, g_true[partner]))
    d_an = torch.minimum(1 - cosine(images, g_other), 1 - cosine(images, g_other[partner]))
    return F.softplus(d_ap - d_an)


@REGULARIZERS.register("art")
@dataclass(frozen=True)
class ART(AdversarialObjective):
    weight: float = 0.5
    k: int | None = None          # entries (channels x pixels) of the attack's mask; None: the reference's share,
                                  # 1000 of CIFAR's 3072 (255 of MNIST's 784)
    relative_step: float | None = REFERENCE_STEP_OF_EPS  # the attack's step as a fraction of eps; None: step_size
    surrogate_beta: float = 50.0  # softplus beta of the copy that gives every second-order gradient
    reduction: Reduction = field(default="mean", kw_only=True)  # both terms are batch means in the reference
    second_order: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1 or null, got {self.k}")
        if self.relative_step is not None and not 0 < self.relative_step < math.inf:
            raise ValueError(f"relative_step must be positive or null, got {self.relative_step}")
        if not self.surrogate_beta > 0:
            raise ValueError(f"surrogate_beta must be positive, got {self.surrogate_beta}")

    def mask_size(self, entries: int) -> int:
        """k, or the reference's share of an image's entries; refused when larger than the image."""
        if self.k is None:
            return max(1, round(entries * REFERENCE_MASK_SHARE))
        if self.k > entries:
            raise ValueError(f"k must be at most the {entries} entries of an image, got {self.k}")
        return self.k

    def check_fits(self, image_shape: tuple[int, int, int]) -> None:
        self.mask_size(image_shape[0] * image_shape[1] * image_shape[2])

    def alignment_attack(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """x_adv: signed ascent of softplus(cos(z, g_o) - cos(z, g_y)) on the top-k mask, from a random start."""
        ball = LinfBall(x, self.eps)
        start = ball.sample() if self.random_start else x.detach().clone()
        with torch.enable_grad():  # the mask: the top-k of the true class's input gradient at the start
            start.requires_grad_(True)
            (g_y,) = torch.autograd.grad(model(start).gather(1, y.unsqueeze(1)).sum(), start)
        mask = g_y.abs().flatten(1).topk(self.mask_size(g_y[0].numel()), dim=1).indices

        def misalignment(z: Tensor) -> Tensor:
            g_true, g_other = true_and_strongest_other_gradients(model, z, y, create_graph=True)
            anchor = z.flatten(1).gather(1, mask)
            return F.softplus(F.cosine_similarity(anchor, g_other.gather(1, mask), eps=ATTACK_GUARD)
                              - F.cosine_similarity(anchor, g_true.gather(1, mask), eps=ATTACK_GUARD))

        step = self.relative_step * self.eps if self.relative_step is not None else self.step_size
        with softplus_surrogate(model, self.surrogate_beta):
            return pgd(misalignment, ball, self.steps, step, start=start.detach())

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.alignment_attack(model, x, y)
        adv_logits = model(x_adv)
        ce_adv = F.cross_entropy(adv_logits, y, reduction="none")
        with torch.no_grad():
            logits = model(x)
        terms = {"ce_adv": ce_adv.detach().mean(), "acc_adv": (adv_logits.detach().argmax(1) == y).float().mean(),
                 "eps": x.new_full((), self.eps)}
        if not self.weight:
            return LossOutput(reduce(ce_adv, self.reduction), logits, terms)
        both = torch.cat([x, x_adv]).detach().requires_grad_(True)
        with softplus_surrogate(model, self.surrogate_beta):
            g_true, g_other = true_and_strongest_other_gradients(model, both, torch.cat([y, y]), create_graph=True)
        per_copy = alignment_loss(both.detach().flatten(1), g_true, g_other)
        alignment = per_copy.view(2, -1).mean(0)  # each example: the mean over its clean and adversarial copies
        terms["alignment"] = alignment.detach().mean()
        return LossOutput(reduce(ce_adv + self.weight * alignment, self.reduction), logits, terms)
