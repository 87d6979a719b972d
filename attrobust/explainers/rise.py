"""RISE (Petsiuk, Das, Saenko, BMVC 2018): the mean of random masks weighted by the target's score on the masked
image, as the authors' code (github.com/eclique/RISE, `explanations.py`) computes it.

S(x) = 1 / (N p) * sum_i f(x * M_i) M_i over N = `masks` masks M_i: a `cells` x `cells` grid of Bernoulli(p)
cells, upsampled bilinearly to (cells + 1) * ceil(H / cells) pixels a side and cropped at a random offset in
[0, ceil(H / cells)) per axis (the authors' `generate_masks`; their skimage `resize(order=1, mode="reflect")` is
written as one matrix per axis, mirrored edges included, and tests/test_perturbation_explainers.py checks it
against skimage). f is the target's softmax probability, as in the authors' code (`score: logit` for the logit).
One mask per pixel for all channels: (B, 1, H, W).

The masks are drawn from a generator seeded with `seed` at every call (on the CPU: the same masks on every device)
and shared by all images of the batch, so an image's map does not depend on its batch. Passes per image: `masks`;
forward passes only, so not differentiable. Oracle: `captum-rise` (its `RISE`, the same weighted sum without the
1/p) on the same masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, check_seed, rows_per_pass
from attrobust.explainers.perturbation import SCORES, Score, refuse_create_graph, target_scores


@EXPLAINERS.register("rise")
@dataclass(frozen=True)
class RISEExplainer(Explainer):
    family = "perturbation"
    masks: int = 1000     # N (the paper: 4000 to 8000 on ImageNet)
    cells: int = 7        # the grid's side (the paper: 7)
    p: float = 0.5        # the probability that a cell is kept (the paper: 0.5)
    score: Score = "probability"
    seed: int = 0
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        if self.masks < 1 or self.cells < 1:
            raise ValueError(f"masks and cells must be >= 1, got {self.masks} and {self.cells}")
        if not 0 < self.p <= 1:
            raise ValueError(f"p must be in (0, 1], got {self.p}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got '{self.score}'")
        check_seed(self.seed)
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        return self.masks

    def grids_and_offsets(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """The seeded draws: (N, cells, cells) binary grids and (N, 2) crop offsets (rows, columns)."""
        generator = torch.Generator().manual_seed(self.seed)
        grids = (torch.rand((self.masks, self.cells, self.cells), generator=generator) < self.p).double()
        cell = torch.tensor([math.ceil(height / self.cells), math.ceil(width / self.cells)])
        offsets = (torch.rand((self.masks, 2), generator=generator) * cell).long()
        return grids, offsets

    def draw_masks(self, height: int, width: int, like: Tensor) -> Tensor:
        """(N, 1, H, W) masks in [0, 1], in `like`'s dtype and device."""
        return upsample_and_crop(*self.grids_and_offsets(height, width), height, width).to(like)

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        return rise(model, x.detach(), target, self.draw_masks(*x.shape[-2:], like=x), self.p, self.score,
                    rows_per_pass(self.max_points, x))

    def describe(self) -> str:
        return f"rise({self.masks}x{self.cells})"


def upsample_and_crop(grids: Tensor, offsets: Tensor, height: int, width: int) -> Tensor:
    """The authors' masks from their grids: bilinear upsampling to (cells + 1) * cell pixels, then the crop."""
    cells = grids.shape[-1]
    rows = linear_resize_matrix(cells, (cells + 1) * math.ceil(height / cells))  # (up_h, cells)
    cols = linear_resize_matrix(cells, (cells + 1) * math.ceil(width / cells))
    take_rows = rows[offsets[:, :1] + torch.arange(height)]                     # (N, H, cells)
    take_cols = cols[offsets[:, 1:] + torch.arange(width)]                      # (N, W, cells)
    return (take_rows @ grids @ take_cols.transpose(1, 2)).unsqueeze(1)


def linear_resize_matrix(size: int, out: int) -> Tensor:
    """(out, size) float64: skimage's `resize(order=1, mode="reflect")` along one axis as a matrix (pixel centres
    c = (i + 1/2) size / out - 1/2, mirrored about the first and last pixel: scipy's `zoom(grid_mode=True,
    mode="mirror")`)."""
    c = (torch.arange(out, dtype=torch.float64) + 0.5) * size / out - 0.5
    c = c.abs()
    c = torch.where(c > size - 1, 2 * (size - 1) - c, c) if size > 1 else torch.zeros_like(c)
    low = c.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    weight = c - low
    matrix = torch.zeros(out, size, dtype=torch.float64)
    matrix[torch.arange(out), low] += 1 - weight
    matrix[torch.arange(out), high] += weight
    return matrix


def rise(model: nn.Module, x: Tensor, target: Tensor, masks: Tensor, p: float, score: Score,
         rows: int | None) -> Tensor:
    """(B, 1, H, W): sum_i f(x * M_i) M_i / (N p) for `masks` (N, 1, H, W)."""
    scores = target_scores(model, lambda start, stop: x.unsqueeze(0) * masks[start:stop].unsqueeze(1), len(masks),
                           target, rows, score)  # (N, B)
    return torch.einsum("nb,nhw->bhw", scores, masks[:, 0]).unsqueeze(1) / (len(masks) * p)
