"""Occlusion (Zeiler and Fergus, ECCV 2014), as Captum's `Occlusion`: the drop of the target logit when a square
window of the image is replaced by a constant, spread over the window's pixels and averaged over the windows that
cover each pixel.

A `window` x `window` patch over all channels slides with `stride` pixels from the top-left corner (Captum's
`sliding_window_shapes=(C, window, window)`, `strides=stride`); each position p gives d_p = f(x) - f(x with the
patch set to `baseline`), and a pixel's attribution is the mean of d_p over the windows covering it, the same in
every channel. When the stride does not tile the image, the last window of a row or column is cut at the edge, as in
Captum (ceil((size - window) / stride) + 1 positions per axis), so every pixel is covered. Passes per image: 1 + the
number of window positions (counted for a 28 x 28 image; a larger image takes more); forward passes only, so not
differentiable.
Oracle: Captum's `Occlusion` (tests/test_perturbation_explainers.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer, check_max_points, rows_per_pass
from attrobust.explainers.perturbation import refuse_create_graph, target_scores


@EXPLAINERS.register("occlusion")
@dataclass(frozen=True)
class OcclusionExplainer(Explainer):
    family = "perturbation"
    window: int = 4       # the patch's side, pixels
    stride: int = 2       # pixels between patch positions
    baseline: float = 0.0  # the value the patch is set to (pixels in [0, 1])
    max_points: int | None = None
    needs_surrogate = False
    differentiable = False

    def __post_init__(self) -> None:
        if self.window < 1 or self.stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {self.window} and {self.stride}")
        check_max_points(self.max_points)

    @property
    def passes_per_image(self) -> int:
        per_axis = max(1, math.ceil((28 - self.window) / self.stride) + 1)  # on MNIST's size: sizes chunks and costs
        return 1 + per_axis ** 2

    def starts(self, size: int) -> range:
        if self.window > size:
            raise AttrobustError(f"explainer.window={self.window} is larger than the {size}-pixel image; choose a "
                                 f"window of at most {size}")
        return range(0, math.ceil((size - self.window) / self.stride) * self.stride + 1, self.stride)

    def masks(self, height: int, width: int, like: Tensor) -> Tensor:
        """(P, 1, H, W): 1 inside each window position, row-major over positions."""
        tops, lefts = self.starts(height), self.starts(width)
        rows = torch.arange(height, device=like.device)
        cols = torch.arange(width, device=like.device)
        inside_rows = (rows >= torch.tensor(tops, device=like.device).view(-1, 1)) \
            & (rows < torch.tensor(tops, device=like.device).view(-1, 1) + self.window)
        inside_cols = (cols >= torch.tensor(lefts, device=like.device).view(-1, 1)) \
            & (cols < torch.tensor(lefts, device=like.device).view(-1, 1) + self.window)
        masks = inside_rows[:, None, :, None] & inside_cols[None, :, None, :]
        return masks.flatten(0, 1).unsqueeze(1).to(like.dtype)

    def explain(self, model: nn.Module, x: Tensor, target: Tensor, *, create_graph: bool = False) -> Tensor:
        refuse_create_graph(self.registry_name, create_graph)
        masks = self.masks(*x.shape[-2:], like=x)
        x = x.detach()

        def occluded(start: int, stop: int) -> Tensor:
            m = masks[start:stop].unsqueeze(1)  # (p, 1, 1, H, W) against x (B, C, H, W)
            return x * (1 - m) + self.baseline * m

        rows = rows_per_pass(self.max_points, x)
        drops = target_scores(model, lambda a, b: x.unsqueeze(0), 1, target, rows) \
            - target_scores(model, occluded, len(masks), target, rows)  # (P, B)
        total = torch.einsum("pb,phw->bhw", drops, masks[:, 0])
        attribution = total / masks[:, 0].sum(0)
        return attribution.unsqueeze(1).expand_as(x).contiguous()

    def describe(self) -> str:
        return f"occlusion({self.window}/{self.stride})"
