"""Class balancing by random distortion, batched: the RAR reference's GTSRB / Flower-17 training-set augmentation.

The reference (`generate_data.py`) grows every class to N images: the class's own images first, then
N - count distorted copies of them in turn (copy i distorts image i mod count). A distortion is, in this order:
1. a rotation by U(-15, 15) degrees about the image centre, edge pixels replicated (skimage `rotate`, mode 'edge');
2. a translation by U(-2.5, 2.5) pixels in x and in y, zeros outside (cv2 `warpAffine`, constant border);
3. a projective warp: each corner moved by U(-d, d) in x and y with d = 0.3 * height * U(0, 0.8), edge pixels
   replicated (skimage `ProjectiveTransform` + `warp`, order 1, mode 'edge');
each with bilinear interpolation on floats in [0, 1], then x 255 and truncated to uint8 as the reference does.
Here the three maps are applied to a whole chunk of images at once (`grid_sample` on per-image homographies); the
random draws come from a seeded torch generator, so the copies are reproducible but not the reference's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attrobust.data.base import ImageSet

PIXELS_PER_CHUNK = 2**24  # float32 values warped at once (64 MiB per buffer)


@dataclass(frozen=True)
class Distortion:
    """Ranges of the reference's random distortion (`transform_image` defaults)."""

    max_angle: float = 15.0        # degrees
    max_translation: float = 5.0   # pixels; the shift is U(-max/2, max/2)
    max_warp: float = 0.8          # corner displacement bound, as a fraction of 0.3 * height


def balance_classes(data: ImageSet, per_class: int, num_classes: int, seed: int,
                    distortion: Distortion = Distortion()) -> ImageSet:
    """Every class grown to `per_class` images: its originals, then distorted copies (reference order, by class).

    A class that already has `per_class` or more images keeps its originals only.
    """
    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label in range(num_classes):
        members = torch.nonzero(data.labels == label).squeeze(1)
        kept = [data.images[members]]
        missing = per_class - len(members)
        if len(members) and missing > 0:
            sources = members[torch.arange(missing) % len(members)]
            kept.append(distort_chunked(data.images, sources, generator, distortion))
        class_images = torch.cat(kept)
        images.append(class_images)
        labels.append(torch.full((len(class_images),), label, dtype=torch.int64))
    return ImageSet(torch.cat(images), torch.cat(labels))


def distort_chunked(images: Tensor, sources: Tensor, generator: torch.Generator,
                    distortion: Distortion = Distortion()) -> Tensor:
    """`distort(images[sources])`, a memory-bounded chunk at a time (the draws do not depend on the chunking)."""
    per_image = math.prod(images.shape[1:])
    chunk = max(1, PIXELS_PER_CHUNK // per_image)
    params = draw_parameters(len(sources), images.shape[2], generator, distortion)
    return torch.cat([distort(images[sources[start:start + chunk]], *(p[start:start + chunk] for p in params))
                      for start in range(0, len(sources), chunk)])


def draw_parameters(n: int, height: int, generator: torch.Generator,
                    distortion: Distortion = Distortion()) -> tuple[Tensor, Tensor, Tensor]:
    """(angles in degrees (n,), shifts in pixels (n, 2), corner offsets in pixels (n, 4, 2)), float64."""
    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    angles = (2 * uniform(n) - 1) * distortion.max_angle
    shifts = distortion.max_translation * uniform(n, 2) - distortion.max_translation / 2
    reach = height * 0.3 * distortion.max_warp * uniform(n)
    corners = (2 * uniform(n, 4, 2) - 1) * reach.view(n, 1, 1)
    return angles, shifts, corners


def distort(images: Tensor, angles: Tensor, shifts: Tensor, corners: Tensor) -> Tensor:
    """Rotate, translate and warp uint8 (n, C, H, W) images (see the module doc); returns uint8."""
    n, _, height, width = images.shape
    x = images.double() / 255.0
    x = _warp(x, _rotation(angles, height, width), "border")
    x = _warp(x, _translation(shifts), "zeros")
    x = _warp(x, _corner_homography(corners, height, width), "border")
    return (x * 255.0).clamp(0, 255).to(torch.uint8)  # truncation, as numpy's astype(uint8)


def _rotation(angles: Tensor, height: int, width: int) -> Tensor:
    """Output -> input map of skimage's `rotate`: R(angle) (p - c) + c, c = ((W - 1) / 2, (H - 1) / 2)."""
    theta = torch.deg2rad(angles)
    cos, sin = torch.cos(theta), torch.sin(theta)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    m = torch.zeros(len(angles), 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = cos, -sin, sin, cos, 1.0
    m[:, 0, 2] = cx - cos * cx + sin * cy
    m[:, 1, 2] = cy - sin * cx - cos * cy
    return m


def _translation(shifts: Tensor) -> Tensor:
    """Output -> input map of cv2's `warpAffine` with [[1, 0, tx], [0, 1, ty]]: p - t."""
    m = torch.eye(3, dtype=torch.float64).repeat(len(shifts), 1, 1)
    m[:, :2, 2] = -shifts
    return m


def _corner_homography(offsets: Tensor, height: int, width: int) -> Tensor:
    """The homography taking the moved corners to the image corners, used as the output -> input map (as
    skimage's `warp(image, ProjectiveTransform estimated from moved to fixed corners)`).

    Corners in (x, y) order tl, bl, br, tr; the reference moves them by (left, top), (left, -bottom),
    (-right, -bottom), (-right, top) from (0, 0), (0, h), (h, h), (h, 0) (h = height: the reference images are square).
    """
    h = float(height)
    fixed = torch.tensor([[0.0, 0.0], [0.0, h], [h, h], [h, 0.0]], dtype=torch.float64)
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    moved = fixed + signs * offsets
    return _homography(moved, fixed.expand_as(moved))


def _homography(source: Tensor, target: Tensor) -> Tensor:
    """Per batch element, the 3x3 H (H[2, 2] = 1) with H(source_i) = target_i for the 4 point pairs (n, 4, 2)."""
    x, y = source.unbind(-1)
    u, v = target.unbind(-1)
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)                       # (n, 8, 8)
    b = torch.cat([u, v], 1)                                 # (n, 8)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)


def _warp(x: Tensor, output_to_input: Tensor, padding: str) -> Tensor:
    """Bilinear resampling: output pixel p (pixel centres at integers) reads input point M p (homogeneous)."""
    n, _, height, width = x.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=x.dtype), torch.arange(width, dtype=x.dtype), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, -1, 3)          # (1, H*W, 3)
    mapped = points @ output_to_input.transpose(1, 2)                               # (n, H*W, 3)
    xy = mapped[..., :2] / mapped[..., 2:]
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=x.dtype)
    grid = (xy * scale - 1.0).view(n, height, width, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)
