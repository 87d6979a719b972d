"""What the attention explainers share: the attention probabilities of attrobust's ViT (`model=vit`), kept during
one forward pass, and the upsampling of a class-token row to the image."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from attrobust.errors import AttrobustError
from attrobust.models.vit import Attention, ViT


def vit_of(model: nn.Module, explainer: str) -> ViT:
    """The model's ViT (whose attention modules, in depth order, and patch grid the explainers read); one line
    naming the model when it has none."""
    vits = [module for module in model.modules() if isinstance(module, ViT)]
    if not vits:
        raise AttrobustError(f"explainer {explainer} reads the attention of attrobust's vision transformer "
                             f"(model=vit); {type(model).__name__} has none: choose another explainer")
    return vits[0]


@contextmanager
def kept_attention(modules: list[Attention]) -> Iterator[None]:
    """The modules keep their attention probabilities (in the autograd graph) while inside."""
    for module in modules:
        module.keep_attention, module.kept = True, None
    try:
        yield
    finally:
        for module in modules:
            module.keep_attention, module.kept = False, None


def class_row_map(relevance: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W): the class token's row of a (B, T, T) token relevance, without itself, on the patch grid,
    upsampled bilinearly to the image (Chefer et al.'s code)."""
    patches = relevance[:, 0, 1:].reshape(len(relevance), 1, *grid)
    return F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
