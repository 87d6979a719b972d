"""The attack direction without second derivatives: the sign of the NES estimate (Wierstra et al.; Ilyas et al.,
ICML 2018) of d objective / d x on the network itself, sum over `probes` antithetic Gaussian probes u of
(f(x + s u) - f(x - s u)) u, s = `probe_radius`. Only explainer passes (first order), all probes of all images in one
batch; no surrogate is needed, so it works for activations without a smooth counterpart (FullSort, ReLU6) and explainers
without second derivatives. The probes come from torch's global generator (seeded per chunk by the evaluation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from attrobust.attacks.iterates import Reference
from attrobust.attributions import saliency_map

if TYPE_CHECKING:
    from attrobust.attacks.attribution import AttributionAttack


def nes_direction(attack: AttributionAttack, model: nn.Module, x: Tensor, reference: Reference) -> Tensor:
    """sign of the NES estimate of d attack.objective / d x (B, C, H, W), with the attack's probes and radius."""
    batch, q = len(x), attack.probes
    noise = torch.randn((q, *x.shape), device=x.device, dtype=x.dtype)
    points = torch.cat([x.detach() + attack.probe_radius * noise, x.detach() - attack.probe_radius * noise])
    rows = torch.arange(batch, device=x.device).repeat(2 * q)
    attributions = attack.direction_explainer.explain(model, points.flatten(0, 1), reference.label[rows]).detach()
    scores = attack.objective(saliency_map(attributions), reference.select(rows)).view(2 * q, batch)
    weights = (scores[:q] - scores[q:]).to(x.dtype).view(q, batch, *[1] * (x.dim() - 1))
    return (weights * noise).sum(dim=0).sign()
