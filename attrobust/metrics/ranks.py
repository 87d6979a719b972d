"""Rank correlations between batches of maps, equal to scipy's definitions including ties, without a Python loop.

`kendall_tau_b` equals `scipy.stats.kendalltau` (variant 'b'); `spearman_rho` equals `scipy.stats.spearmanr`
(Pearson correlation of average ranks). Saliency maps of MNIST digits hold hundreds of exact zeros, so ties matter.
Kendall counts discordant pairs with a bottom-up merge over sorted blocks (`torch.searchsorted` counts, per element
of a right block, how many elements of its left block are larger) in O(D log^2 D) per row, all rows at once.

Shapes: a, b (N, D) -> (N,) float64. A constant row gives NaN, as scipy does; the registered metrics and the attacks'
selection use `defined_for_constant_maps` (1 for equal maps, else 0) instead.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kendall_tau_b(a: Tensor, b: Tensor) -> Tensor:
    """tau_b = (P - Q) / sqrt((n0 - n1)(n0 - n2)) per row, with P - Q = n0 - n1 - n2 + n3 - 2 * discordant."""
    a, b = _check(a, b)
    n = a.shape[1]
    order_b = torch.sort(b, dim=1, stable=True).indices           # lexicographic sort by (a, b):
    a_by_b = a.gather(1, order_b)                                  # stable sort by b, then stable by a
    order = order_b.gather(1, torch.sort(a_by_b, dim=1, stable=True).indices)
    a_sorted, b_sorted = a.gather(1, order), b.gather(1, order)
    pairs = n * (n - 1) / 2
    ties_a = _tied_pairs(_run_starts(a_sorted))
    ties_b = _tied_pairs(_run_starts(torch.sort(b, dim=1).values))
    ties_ab = _tied_pairs(_run_starts(a_sorted) | _run_starts(b_sorted))
    discordant = _count_inversions(b_sorted)
    numerator = pairs - ties_a - ties_b + ties_ab - 2 * discordant
    return numerator / torch.sqrt((pairs - ties_a) * (pairs - ties_b))


def spearman_rho(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the average ranks (ties share the mean of their ranks), per row."""
    a, b = _check(a, b)
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / torch.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))


def average_ranks(v: Tensor) -> Tensor:
    """Ranks 1..D along each row, ties given the average of their ranks (scipy.stats.rankdata 'average')."""
    sorted_v, order = torch.sort(v, dim=1, stable=True)
    n = v.shape[1]
    index = torch.arange(n, device=v.device).expand_as(order)
    starts = _run_starts(sorted_v)
    ends = sorted_v != sorted_v.roll(-1, dims=1)
    ends[:, -1] = True
    run_start = torch.where(starts, index, 0).cummax(dim=1).values
    run_end = torch.where(ends, index, n).flip(1).cummin(dim=1).values.flip(1)
    ranks = (run_start + run_end).to(torch.float64) / 2 + 1
    return torch.empty_like(ranks).scatter_(1, order, ranks)


def defined_for_constant_maps(value: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """A correlation where it is defined; where it is not (a constant row: NaN, as scipy gives), 1 if the two maps are
    equal and 0 (no association) otherwise. A map that an attack made constant (an all-zero Grad-CAM) is then a changed
    explanation that the attack can keep, not an unscored image."""
    fallback = (a == b).all(1).to(value.dtype)
    return torch.where(torch.isnan(value), fallback, value)


def kendall_of_maps(a: Tensor, b: Tensor) -> Tensor:
    """`kendall_tau_b`, defined for constant maps (`defined_for_constant_maps`): the metric, the attacks' selection."""
    return defined_for_constant_maps(kendall_tau_b(a, b), a, b)


def spearman_of_maps(a: Tensor, b: Tensor) -> Tensor:
    """`spearman_rho`, defined for constant maps (`defined_for_constant_maps`)."""
    return defined_for_constant_maps(spearman_rho(a, b), a, b)


def _check(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"expected two (N, D) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.detach().to(torch.float64), b.detach().to(torch.float64)


def _run_starts(sorted_rows: Tensor) -> Tensor:
    """True where a run of equal values starts in each sorted row."""
    starts = sorted_rows != sorted_rows.roll(1, dims=1)
    starts[:, 0] = True
    return starts


def _tied_pairs(starts: Tensor) -> Tensor:
    """Number of tied pairs per row, given where runs of equal values start in a sorted row: sum of t(t-1)/2."""
    index = torch.arange(starts.shape[1], device=starts.device).expand_as(starts)
    run_start = torch.where(starts, index, 0).cummax(dim=1).values
    return (index - run_start).sum(1).to(torch.float64)


def _count_inversions(v: Tensor) -> Tensor:
    """Pairs i < j with v_i > v_j (strictly), per row, by a bottom-up merge of sorted blocks.

    At each level, `searchsorted` gives every element's rank in the other half of its block: it counts the
    inversions (left elements larger than a right element) and places both halves into the merged block.
    """
    rows, n = v.shape
    size = 1 << max(n - 1, 0).bit_length()
    current = torch.cat([v, v.new_full((rows, size - n), float("inf"))], dim=1)  # padding sorts last, adds none
    count = torch.zeros(rows, dtype=torch.float64, device=v.device)
    width = 1
    while width < size:
        blocks = current.view(rows, size // (2 * width), 2, width)
        left, right = blocks[:, :, 0].contiguous(), blocks[:, :, 1].contiguous()
        left_not_larger = torch.searchsorted(left, right, right=True)   # per right element: left <= it
        right_smaller = torch.searchsorted(right, left, right=False)    # per left element: right < it
        count += (width - left_not_larger).sum(dim=(1, 2)).to(torch.float64)
        offset = torch.arange(width, device=v.device)
        merged = torch.empty(rows, size // (2 * width), 2 * width, dtype=v.dtype, device=v.device)
        merged.scatter_(2, right_smaller + offset, left)
        merged.scatter_(2, left_not_larger + offset, right)
        current = merged.view(rows, size)
        width *= 2
    return count
