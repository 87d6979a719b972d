"""Per-channel histogram equalisation of uint8 images, batched: OpenCV's `equalizeHist` on every channel.

The RAR GTSRB reference (`gtsrb_input.py`) equalises each channel of every train and test image with
`cv2.equalizeHist` before training. This is the same integer mapping, computed for all images and channels at once:
with `hist` the 256-bin histogram of one channel, `first` its lowest occupied value and `total` its pixel count,
value v maps to round_half_even(float32(cdf(v) - hist[first]) * float32(255 / (total - hist[first]))), and a
channel with a single value v keeps v (OpenCV fills it with v).
"""

from __future__ import annotations

import torch
from torch import Tensor


def equalize_histograms(images: Tensor) -> Tensor:
    """`images` uint8 (N, C, H, W) -> uint8 (N, C, H, W), each (image, channel) equalised on its own."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    channels = images.reshape(n * c, h * w).long()
    offsets = torch.arange(n * c).unsqueeze(1) * 256
    hist = torch.bincount((channels + offsets).flatten(), minlength=n * c * 256).view(n * c, 256)
    cdf = hist.cumsum(1)
    first = (hist > 0).int().argmax(1, keepdim=True)            # lowest value present in each channel
    first_count = hist.gather(1, first)
    total = h * w
    uniform = first_count.squeeze(1) == total
    scale = (torch.tensor(255.0) / (total - first_count).clamp(min=1).float())  # float32, like OpenCV's `255.f / n`
    lut = ((cdf - first_count).float() * scale).round().clamp(0, 255).to(torch.uint8)
    lut[uniform] = first[uniform].to(torch.uint8)               # a single-valued channel keeps its value
    return lut.gather(1, channels).view(n, c, h, w)
