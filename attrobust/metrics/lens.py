"""LENS (Kamath et al., AAAI 2024, "Rethinking robustness of model attributions"): top-k measures that forgive small
local shifts, as the authors' code (github.com/ksandeshk/LENS) computes them, in 2-D.

o = top-k of the original map, p = top-k of the perturbed map (k = the attack's eval_k; ties as
`attrobust.metrics.topk`), W(S) = the union of the `window` x `window` neighbourhoods of the pixels of S, cut at
the image border. Per image, each divided by k:
- LENS recall = |W(o) n p|, LENS precision = |o n W(p)|; with window 1 both equal the top-k intersection.

Diverse top-k (`diverse: true`, the reference's "-div" measures, `topkDiv`): instead of the k largest pixels, a greedy
selection that walks the `candidates_per_k * k` largest pixels (the reference's 600 for MNIST's k = 100, 6000 for
Flower's 1000) from the largest down and takes a pixel unless a pixel taken before has it in its window; the same
measures are then computed on these sets, each divided by k (an image whose candidates run out before k picks keeps
fewer; the reference would stop with an IndexError).

Deliberate differences from the reference (eval_with_lens_attribution_attack.py), all of them index bookkeeping:
- W is a 2-D neighbourhood cut at the image border; the reference adds row offsets to flat indices, so a window
  wraps from one row end to the next row's start, and it drops pixel 0 from every window and diverse set;
- its greedy loop suppresses the second pick's window without keeping the pick (an off-by-one: its sets equal this
  selection run for k + 1 picks without the second); here every pick is kept;
- top-k sets break ties as `attrobust.metrics.topk` (stable: later indices first); the reference's numpy default
  sort leaves ties to the sorting algorithm.
The reference's own runs use the 3x3 window (its 7x7 variant for Flower skips row offsets +-3).

Shapes: maps (N, H*W) -> (N,) float64. Batched: the greedy selection loops over the k picks, never over images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attrobust.metrics.base import MapSpec, Metric
from attrobust.metrics.topk import top_k_mask


def check_window(window: int) -> None:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of pixels >= 1 (3 for 3x3), got {window}")


def lens_window_mask(mask: Tensor, image_size: tuple[int, int], window: int) -> Tensor:
    """W(S): every pixel within the `window` x `window` square around a pixel of `mask` (N, H*W) bool, in 2-D."""
    if window == 1:
        return mask
    height, width = image_size
    grid = mask.view(-1, 1, height, width).to(torch.float32)
    return F.max_pool2d(grid, window, stride=1, padding=window // 2).flatten(1) > 0


def diverse_top_k_mask(v: Tensor, k: int, image_size: tuple[int, int], window: int, candidates: int) -> Tensor:
    """Greedy top-k with window suppression among the `candidates` largest entries of each row of `v` (N, H*W)."""
    n, pixels = v.shape
    height, width = image_size
    order = torch.sort(v, dim=1, stable=True, descending=True).indices[:, :min(candidates, pixels)]
    rows, cols = order // width, order % width
    taken = torch.zeros(n, pixels, dtype=torch.bool, device=v.device)
    blocked = torch.zeros(n, order.shape[1], dtype=torch.bool, device=v.device)
    count = torch.zeros(n, dtype=torch.long, device=v.device)
    half = window // 2
    for _ in range(k):
        free = ~blocked & (count < k).unsqueeze(1)
        has = free.any(1)
        if not bool(has.any()):
            break
        first = free.to(torch.int8).argmax(1)  # the largest candidate not blocked yet
        pick_row, pick_col = rows.gather(1, first[:, None]), cols.gather(1, first[:, None])
        picked = order.gather(1, first[:, None])
        taken.scatter_(1, picked, taken.gather(1, picked) | has[:, None])  # a row without a free candidate: unchanged
        near = ((rows - pick_row).abs() <= half) & ((cols - pick_col).abs() <= half)
        blocked |= near & has[:, None]
        count += has.long()
    return taken


def lens_scores(original: Tensor, perturbed: Tensor, maps: MapSpec, window: int, diverse: bool,
                candidates_per_k: int) -> tuple[Tensor, Tensor]:
    """(recall, precision) per image, as float64 fractions of k."""
    k = min(maps.k, original.shape[1])
    if diverse:
        o = diverse_top_k_mask(original, k, maps.image_size, window, candidates_per_k * k)
        p = diverse_top_k_mask(perturbed, k, maps.image_size, window, candidates_per_k * k)
    else:
        o, p = top_k_mask(original, k), top_k_mask(perturbed, k)
    recall = (lens_window_mask(o, maps.image_size, window) & p).sum(1).to(torch.float64) / k
    precision = (o & lens_window_mask(p, maps.image_size, window)).sum(1).to(torch.float64) / k
    return recall, precision


@dataclass(frozen=True)
class LensMetric(Metric):
    """The settings and call shared by `lens_recall` and `lens_precision` (`side` picks which of the two)."""

    unit = "%"
    side: ClassVar[int] = 0  # 0: recall, 1: precision
    window: int = 3
    diverse: bool = False
    candidates_per_k: int = 6

    def __post_init__(self) -> None:
        check_window(self.window)
        if self.candidates_per_k < 1:
            raise ValueError(f"candidates_per_k must be >= 1, got {self.candidates_per_k}")

    def check_fits(self, height: int, width: int) -> None:
        if self.window > max(height, width):
            raise ValueError(f"window {self.window} is larger than the {height} x {width} maps (every window would "
                             f"hold the whole map: LENS would be 100 %); choose an odd window <= {max(height, width)}")

    def __call__(self, original: Tensor, perturbed: Tensor, maps: MapSpec) -> Tensor:
        return lens_scores(original, perturbed, maps, self.window, self.diverse, self.candidates_per_k)[self.side]
