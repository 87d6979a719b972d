"""Decoding image files into one uint8 tensor, resized, with worker processes where they help.

Decoding is the one per-file step of loading a dataset (each file is its own JPEG / PPM stream); everything after
it is batched. The result is cached per data root (`attrobust.data.cache`), so it is paid once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from attrobust.data.base import ImageSet
from attrobust.errors import AttrobustError

RESAMPLING = Image.Resampling.LANCZOS  # PIL's ANTIALIAS, as the reference's tflearn `resize_image`
FILES_PER_WORKER_TASK = 256


def decode_images(paths: Sequence[Path], size: tuple[int, int], mode: str = "RGB", workers: int = 0) -> Tensor:
    """uint8 (N, C, H, W): every file opened with PIL, converted to `mode` ('RGB' or 'L'), resized to `size` (H, W).

    `workers` > 1 decodes in that many processes (0: one per CPU core, at most 8; 1: in this process).
    A file PIL cannot read raises AttrobustError naming it.
    """
    if not paths:
        channels = 3 if mode == "RGB" else 1
        return torch.empty(0, channels, *size, dtype=torch.uint8)
    workers = workers or min(8, os.cpu_count() or 1)
    jobs = [(str(path), size, mode) for path in paths]
    if workers > 1 and len(jobs) > FILES_PER_WORKER_TASK:
        with ProcessPoolExecutor(workers) as pool:
            arrays = list(pool.map(_decode_one, jobs, chunksize=FILES_PER_WORKER_TASK))
    else:
        arrays = [_decode_one(job) for job in jobs]
    failed = next((message for message in arrays if isinstance(message, str)), None)
    if failed is not None:
        raise AttrobustError(failed)
    stacked = np.stack(arrays)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def decode_labelled(samples: Sequence[tuple[Path, int]], size: tuple[int, int], mode: str = "RGB",
                    workers: int = 0) -> ImageSet:
    """`decode_images` of the (path, label) pairs, with their labels."""
    images = decode_images([path for path, _ in samples], size, mode, workers)
    return ImageSet(images, torch.tensor([label for _, label in samples], dtype=torch.int64))


def _decode_one(job: tuple[str, tuple[int, int], str]) -> np.ndarray | str:
    """The decoded, resized image (H, W[, C]) uint8, or the error line for its file."""
    path, (height, width), mode = job
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if image.size != (width, height):
                image = image.resize((width, height), RESAMPLING)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        return f"corrupt or unreadable image {path}: {error}"
    except Image.DecompressionBombError as error:  # a header declaring billions of pixels: never decoded
        return f"image {path} is refused: {error}"
