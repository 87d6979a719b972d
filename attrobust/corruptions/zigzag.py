"""Zigzag (MNIST-C's `zigzag`): 1 .. 5 zigzag lines per image (MNIST-C draws one), each from column 2 to 25 at a row
r0 drawn per line and sloping to r0 + [-5, 5), with teeth 2 pixels long and 2 high, drawn as MNIST-C's
anti-aliased segments (intensity log(1 - d / 2.3) + 1 at a distance d from the segment's line, within its columns)
and added to the image, clipped to 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption, uniform

LENGTH, WIDTH = 2.0, 2.0     # the reference's a and b: a tooth's length and height, pixels
FIRST, LAST = 2.0, 25.0      # the columns a zigzag spans


@CORRUPTIONS.register("zigzag")
@dataclass(frozen=True)
class Zigzag(Corruption):
    levels = (1, 2, 3, 4, 5)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        lines, (height, width) = int(self.level(severity)), x.shape[-2:]
        draws = uniform(self.stream(seed), indices, (lines, 2), x).double().flatten(0, 1)      # (B lines, 2)
        r0 = torch.floor(draws[:, 0] * (height - 1))
        r1 = r0 + torch.floor(draws[:, 1] * 10) - 5
        cols, rows, valid = zigzag_points(r0, r1)
        marks = segments(cols[:, :-1], rows[:, :-1], cols[:, 1:], rows[:, 1:], height, width)
        marks = (marks * (valid[:, 1:, None, None])).sum(dim=1).view(len(x), lines, height, width).sum(dim=1)
        return (x.double() + marks[:, None]).clamp(0, 1).to(x.dtype)


def zigzag_points(r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, P) columns, rows and validity of each zigzag's corners: MNIST-C's teeth along the x axis up to the line's
    length d (and a last corner at d), rotated to the line's slope and moved to (FIRST, r0)."""
    theta = torch.atan((r1 - r0) / (LAST - FIRST))
    d = (LAST - FIRST) / torch.cos(theta)
    teeth = torch.floor((d - LENGTH) / (2 * LENGTH)).long() + 1                          # per zigzag
    slots = torch.arange(int(teeth.max()) + 1, device=r0.device)
    tooth_c = (2 * slots + 1).double() * LENGTH
    tooth_r = torch.where(slots % 2 == 0, WIDTH, -WIDTH).double()
    full = 2 * LENGTH * torch.floor(d / (2 * LENGTH))
    last_r = torch.where((teeth - 1) % 2 == 0, WIDTH, -WIDTH).double() / (2 * (d - full))
    is_tooth, is_last = slots[None] < teeth[:, None], (slots[None] == teeth[:, None]) & (d != full)[:, None]
    c = torch.where(is_tooth, tooth_c[None], torch.where(is_last, d[:, None], 0.0))
    r = torch.where(is_tooth, tooth_r[None], torch.where(is_last, last_r[:, None], 0.0))
    c, r = torch.cat([torch.zeros_like(d)[:, None], c], 1), torch.cat([torch.zeros_like(d)[:, None], r], 1)
    valid = torch.cat([torch.ones_like(is_tooth[:, :1]), is_tooth | is_last], 1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return FIRST + cos * c - sin * r, r0[:, None] + sin * c + cos * r, valid


def segments(c0: Tensor, r0: Tensor, c1: Tensor, r1: Tensor, height: int, width: int) -> Tensor:
    """(N, S, H, W) MNIST-C's `line_from_points` of each segment: log(1 - d / 2.3) + 1 clipped to [0, 1], d the row
    distance to the segment's line, zero outside columns [floor(c0), ceil(c1)) and for a vertical segment."""
    cc = torch.arange(width, dtype=torch.float64, device=c0.device)
    rr = torch.arange(height, dtype=torch.float64, device=c0.device)[:, None]
    run = torch.where(c1 == c0, 1.0, c1 - c0)
    slope = ((r1 - r0) / run)[..., None, None]
    line = slope * (cc - c0[..., None, None]) + r0[..., None, None]                         # (N, S, 1, W)
    distance = (rr - line).abs().clamp(0, 2.3 - 1e-10)
    marks = (torch.log(1 - distance / 2.3) + 1).clamp(0, 1)
    inside = (cc >= torch.floor(c0)[..., None, None]) & (cc < torch.ceil(c1)[..., None, None])
    return torch.where(inside & (c1 != c0)[..., None, None], marks, 0.0)
