"""The corruption contract: `corrupt(x, severity, seed, indices) -> x'`, batched, in [0, 1], reproducible per image.

Random draws come from a counter-based hash of (seed, corruption, image index, element), not from a generator
stream: an image's corruption is the same whatever batch, shard or device it is in. `severities` lists the levels an
evaluation runs (1 mildest .. 5), each a row of the results; a subclass gives its parameter per level (`levels`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Corruption:
    registry_name: ClassVar[str] = ""
    levels: ClassVar[tuple[float, ...]] = ()   # the parameter at severities 1..5
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)

    def __post_init__(self) -> None:
        if not self.severities or any(not 1 <= s <= 5 for s in self.severities) or \
                len(set(self.severities)) != len(self.severities):
            raise ValueError(f"severities must be a non-empty list of different levels 1 to 5, got "
                             f"{list(self.severities)}")

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        """x (B, C, H, W) in [0, 1] at `severity`; `indices` (B,) the images' indices in the test split."""
        raise NotImplementedError

    def check_fits(self, image_shape: tuple[int, ...]) -> None:
        """Raise ValueError (one line) if this corruption cannot corrupt images of (C, H, W) `image_shape`; checked
        before any work."""

    unit: ClassVar[str] = "%"
    higher_is_better: ClassVar[bool] = True   # its measure: accuracy on the corrupted images

    @property
    def heading(self) -> str:
        return f"accuracy under {self.column}"

    def passes(self) -> dict[str, int]:
        """Per image: one forward pass for each severity (the measure cards of the docs)."""
        return {"forward": len(self.severities), "explainer": 0}

    @property
    def column(self) -> str:
        """Its name in per-image columns and table lines (a composition: its parts joined by '+')."""
        return self.registry_name

    def describe(self, severity: int) -> str:
        return f"{self.column}@{severity}"

    def level(self, severity: int) -> float:
        return self.levels[severity - 1]

    def stream(self, seed: int, part: str = "") -> int:
        """This corruption's stream of the seed (its name, and `part` for a second kind of draw)."""
        return _hash(seed ^ zlib.crc32(f"{self.registry_name}:{part}".encode()))


def _hash(value: int) -> int:
    """lowbias32 (C. Wellons), on a Python int."""
    value &= MASK32
    value = ((value ^ (value >> 16)) * 0x7FEB352D) & MASK32
    value = ((value ^ (value >> 15)) * 0x846CA68B) & MASK32
    return value ^ (value >> 16)


def _hash_tensor(value: Tensor) -> Tensor:
    """lowbias32 on int64 tensors holding 32-bit values (products stay below 2**63)."""
    value = value & MASK32
    value = ((value ^ (value >> 16)) * 0x7FEB352D) & MASK32
    value = ((value ^ (value >> 15)) * 0x846CA68B) & MASK32
    return value ^ (value >> 16)


def uniform(stream: int, indices: Tensor, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """(B, *shape) uniform in (0, 1): element e of image i is a function of (stream, i, e) only."""
    per_image = _hash_tensor(indices.to(device=like.device, dtype=torch.int64) ^ stream)
    elements = torch.arange(math.prod(shape), device=like.device, dtype=torch.int64)
    bits = _hash_tensor(_hash_tensor(per_image[:, None] * 0x9E3779B1 + elements[None, :]))
    u = ((bits.to(torch.float64) + 0.5) / 2.0**32).to(like.dtype)
    below_one = torch.nextafter(torch.ones((), dtype=like.dtype), torch.zeros((), dtype=like.dtype))
    return u.clamp(max=below_one).view(len(indices), *shape)  # float32 would round the top draws up to 1


def normal(stream: int, indices: Tensor, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """(B, *shape) standard normal (Box-Muller on two uniform streams)."""
    u1 = uniform(stream, indices, shape, like)
    u2 = uniform(_hash(stream + 1), indices, shape, like)
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def signs(stream: int, indices: Tensor, like: Tensor) -> Tensor:
    """(B,) +1 or -1 per image."""
    return torch.where(uniform(stream, indices, (1,), like)[:, 0] < 0.5, -1.0, 1.0).to(like.dtype)


def affine(x: Tensor, matrices: Tensor, fill: float = 0.0) -> Tensor:
    """Each image resampled (bilinear) at `matrices` (B, 2, 3) in normalised coordinates (`F.affine_grid`, corners
    not aligned); pixels from outside the image are `fill`."""
    grid = F.affine_grid(matrices.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (moved + fill).clamp(0, 1)


def gaussian_kernel(sigma: float, radius: int, like: Tensor) -> Tensor:
    """(2 radius + 1, 2 radius + 1) Gaussian of standard deviation `sigma` pixels, summing to 1 (float64)."""
    steps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=like.device)
    line = torch.exp(-steps**2 / (2 * sigma**2))
    return torch.outer(line, line) / line.sum() ** 2


def gaussian_filter(x: Tensor, sigma: float, truncate: float = 4.0, rows_only: bool = False) -> Tensor:
    """scikit-image's `filters.gaussian` (scipy's `gaussian_filter`, mode 'nearest') of each channel of x (B, C, H,
    W), in float64 and not clipped: a separable kernel of radius int(truncate sigma + 0.5); `rows_only`: along the
    rows (H) alone, as scipy with sigma (sigma, 0)."""
    radius = int(truncate * sigma + 0.5)
    steps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    line = torch.exp(-steps**2 / (2 * sigma**2))
    line = line / line.sum()
    batch, channels, height, width = x.shape
    pads = [0, 0, radius, radius] if rows_only else [radius] * 4
    planes = F.pad(x.double().reshape(batch * channels, 1, height, width), pads, mode="replicate")
    planes = F.conv2d(planes, line.view(1, 1, -1, 1))
    if not rows_only:
        planes = F.conv2d(planes, line.view(1, 1, 1, -1))
    return planes.view(batch, channels, height, width)


def depthwise(x: Tensor, kernels: Tensor) -> Tensor:
    """Each image convolved with its own (B, k, k) kernel (odd k), every channel alike, edges repeated."""
    batch, channels, height, width = x.shape
    k = kernels.shape[-1]
    padded = F.pad(x.reshape(1, batch * channels, height, width), [k // 2] * 4, mode="replicate")
    weight = kernels.to(x.dtype).repeat_interleave(channels, dim=0).unsqueeze(1)
    return F.conv2d(padded, weight, groups=batch * channels).view_as(x).clamp(0, 1)
