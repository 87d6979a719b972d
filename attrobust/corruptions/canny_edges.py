"""Canny edges (MNIST-C's `canny_edges`: the image replaced by scikit-image's `feature.canny` of it, sigma 1,
thresholds 0.1 and 0.2). MNIST-C has one level; here severity s blends the image towards its edge map,
x (1 - a) + a edges with a = s / 5, so severity 5 is MNIST-C's. Deterministic.

As scikit-image: Gaussian smoothing with zero padding divided by the smoothed all-ones image, Sobel gradients
(scipy's `ndimage.sobel`, mirrored border), non-maximum suppression interpolating the magnitude between the two
neighbours on each side along the gradient, and hysteresis: the 8-connected components of the suppressed pixels
at or above the low threshold that hold a pixel at or above the high one. The one-pixel border is never an edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption

SIGMA, LOW, HIGH = 1.0, 0.1, 0.2   # scikit-image's defaults, as MNIST-C calls it


@CORRUPTIONS.register("canny_edges")
@dataclass(frozen=True)
class CannyEdges(Corruption):
    levels = (0.2, 0.4, 0.6, 0.8, 1.0)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        share = self.level(severity)
        batch, channels, height, width = x.shape
        edges = canny(x.double().reshape(batch * channels, height, width)).view_as(x).double()
        return (x.double() * (1 - share) + share * edges).clamp(0, 1).to(x.dtype)


def canny(images: Tensor) -> Tensor:
    """(N, H, W) boolean edge maps of (N, H, W) images, as scikit-image's `feature.canny` with its defaults."""
    smoothed = smooth(images)
    rows = sobel(smoothed, axis=0)
    cols = sobel(smoothed, axis=1)
    magnitude = torch.hypot(rows, cols)
    kept = suppressed(rows, cols, magnitude)
    low = kept & (magnitude >= LOW)
    return hysteresis(low, low & (magnitude >= HIGH))


def smooth(images: Tensor) -> Tensor:
    """Gaussian (sigma 1, truncate 4) with zero padding, over the same filter of an all-ones image."""
    radius = int(4 * SIGMA + 0.5)
    steps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=images.device)
    line = torch.exp(-steps**2 / (2 * SIGMA**2))
    line = (line / line.sum()).to(images.dtype)

    def blur(planes: Tensor) -> Tensor:
        planes = F.conv2d(F.pad(planes[:, None], [0, 0, radius, radius]), line.view(1, 1, -1, 1))
        return F.conv2d(F.pad(planes, [radius, radius, 0, 0]), line.view(1, 1, 1, -1))[:, 0]

    return blur(images) / (blur(torch.ones_like(images)) + torch.finfo(images.dtype).eps)


def sobel(images: Tensor, axis: int) -> Tensor:
    """scipy's `ndimage.sobel` along `axis` (0: rows), border mode 'reflect' (the edge pixel repeated)."""
    derivative = torch.tensor([-1.0, 0.0, 1.0], dtype=images.dtype, device=images.device)
    smoothing = torch.tensor([1.0, 2.0, 1.0], dtype=images.dtype, device=images.device)
    kernel = torch.outer(derivative, smoothing) if axis == 0 else torch.outer(smoothing, derivative)
    padded = F.pad(images[:, None], [1, 1, 1, 1], mode="replicate")
    # torch correlates: with the flipped kernel this is minus scipy's sobel; only magnitudes, whether the two signs
    # agree and their ratios are used, so the sign does not matter
    return F.conv2d(padded, kernel.flip(0, 1)[None, None])[:, 0]


def suppressed(rows: Tensor, cols: Tensor, magnitude: Tensor) -> Tensor:
    """Pixels whose magnitude is at least both interpolated neighbours' along the gradient (the border excluded)."""
    padded = F.pad(magnitude, [1, 1, 1, 1])

    def at(dr: int, dc: int) -> Tensor:  # the magnitude at (r + dr, c + dc)
        return padded[:, 1 + dr: padded.shape[1] - 1 + dr, 1 + dc: padded.shape[2] - 1 + dc]

    up, down, right, left = rows >= 0, rows <= 0, cols >= 0, cols <= 0
    same_sign = (up & right) | (down & left)
    steep = rows.abs() >= cols.abs()
    with torch.no_grad():
        w_steep = cols.abs() / rows.abs()
        w_flat = rows.abs() / cols.abs()
    # the four octant pairs: (first neighbour, diagonal neighbour) on the + side; the - side mirrors them
    same_steep = blend(at(1, 0), at(1, 1), w_steep, magnitude) & blend(at(-1, 0), at(-1, -1), w_steep, magnitude)
    same_flat = blend(at(0, 1), at(1, 1), w_flat, magnitude) & blend(at(0, -1), at(-1, -1), w_flat, magnitude)
    other_flat = blend(at(0, 1), at(-1, 1), w_flat, magnitude) & blend(at(0, -1), at(1, -1), w_flat, magnitude)
    other_steep = blend(at(-1, 0), at(-1, 1), w_steep, magnitude) & blend(at(1, 0), at(1, -1), w_steep, magnitude)
    kept = torch.where(same_sign, torch.where(steep, same_steep, same_flat),
                       torch.where(steep, other_steep, other_flat))
    inner = torch.zeros_like(kept)
    inner[:, 1:-1, 1:-1] = True
    return kept & inner


def blend(first: Tensor, diagonal: Tensor, w: Tensor, magnitude: Tensor) -> Tensor:
    return diagonal * w + first * (1 - w) <= magnitude


def hysteresis(low: Tensor, high: Tensor) -> Tensor:
    """The 8-connected components of `low` that hold a pixel of `high` (grown until nothing changes)."""
    edges = high
    for _ in range(math.prod(low.shape[1:])):
        grown = low & (F.max_pool2d(edges[:, None].double(), 3, stride=1, padding=1)[:, 0] > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges
