"""How an attack on explanations chooses the iterate it keeps, and the restart (attrobust/attacks/attribution.py).

A selection is a registered metric (`attrobust list metrics`) between the original and the iterate's map, oriented so
that lower means a stronger attack (a metric where higher is better, such as Kendall, as it is; one where lower is
better, such as center_shift, negated), or `mass_center`: the reference's selection for its mass-center attack (the
distance from the surrogate's centre of mass, both truncated to whole pixels). A top-k metric compares the attack's
own `k` pixels here (as the reference's criterion does), not `eval_k`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attrobust.attacks.iterates import Reference
from attrobust.metrics import METRICS, MapSpec, Metric, center_of_mass

MASS_CENTER = "mass_center"  # the reference's selection for its mass-center attack (not a metric of its own)
OLD_MEASURES = {"intersection": "topk_intersection"}  # earlier spellings of the selection


def selection_metric(measure: str) -> Metric | None:
    """The registered metric named `measure` (None: the reference's mass-center selection)."""
    return None if measure == MASS_CENTER else METRICS.build({"name": measure})


def untouched(selection: Metric | None) -> float:
    """The criterion of identical maps: what an iterate must go below to be kept."""
    if selection is None:
        return 1.0  # the reference's start value: any counted iterate is kept
    return selection.identical if selection.higher_is_better else -selection.identical


def criterion(selection: Metric | None, reference: Reference, saliency: Tensor, k: int) -> Tensor:
    """The selection criterion of each iterate's map `saliency` (lower = stronger attack), as the reference's
    `check_measure`; `k`: the attack's top-k."""
    if selection is None:
        assert reference.surrogate_center is not None
        center = center_of_mass(saliency, reference.image_size).floor()
        return -torch.linalg.vector_norm(reference.surrogate_center - center, dim=1)
    value = selection(reference.saliency, saliency, MapSpec(reference.image_size, min(k, saliency.shape[1])))
    return value if selection.higher_is_better else -value
