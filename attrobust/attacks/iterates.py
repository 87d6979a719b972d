"""What an attack on explanations keeps track of, per image: the reference (the original images and maps), the best
iterate so far, and the outcome; and how restarts are combined (attrobust/attacks/attribution.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Reference:
    """What an attack knows of the original images: ReLU saliency, its top-k mask, the surrogate's centre."""

    image: Tensor           # (B, C, H, W)
    label: Tensor           # (B,)
    saliency: Tensor        # (B, H*W), ReLU network
    top_k: Tensor           # (B, H*W) bool, top-k of `saliency`
    image_size: tuple[int, int]
    surrogate_center: Tensor | None = None  # (B, 2), truncated to whole pixels as the reference does

    def select(self, rows: Tensor) -> Reference:
        """The reference of the images `rows` (indices)."""
        center = None if self.surrogate_center is None else self.surrogate_center[rows]
        return Reference(self.image[rows], self.label[rows], self.saliency[rows], self.top_k[rows], self.image_size,
                         center)


@dataclass
class BestIterates:
    """Per image, the iterate kept so far: its selection criterion (the attack's `untouched` value while none is kept),
    the image and its saliency."""

    criterion: Tensor  # (B,) float64
    image: Tensor      # (B, C, H, W)
    saliency: Tensor   # (B, H*W)

    @classmethod
    def none_yet(cls, reference: Reference, untouched: float) -> BestIterates:
        """Nothing kept: the criterion of identical maps (`untouched`), the original image and map."""
        n, device = reference.image.shape[0], reference.image.device
        return cls(torch.full((n,), untouched, dtype=torch.float64, device=device), reference.image.clone(),
                   reference.saliency.clone())

    def offer(self, images: Tensor, criterion: Tensor, x: Tensor, saliency: Tensor) -> None:
        """Candidates for the images `images` (indices): kept where their criterion is lower (no wait for the device:
        index writes and torch.where, not boolean masks)."""
        better = criterion < self.criterion[images]
        self.criterion[images] = torch.where(better, criterion, self.criterion[images])
        self.image[images] = torch.where(better.view(-1, *(1,) * (x.dim() - 1)), x, self.image[images])
        self.saliency[images] = torch.where(better.view(-1, 1), saliency, self.saliency[images])


@dataclass(frozen=True)
class AttributionAttackResult:
    """Per-image outcome of an attack on N images (all tensors have N rows)."""

    perturbed: Tensor            # the kept iterate (the original image when unqualified)
    original_saliency: Tensor    # (N, H*W)
    perturbed_saliency: Tensor   # (N, H*W): the kept iterate's map (the original map when unqualified)
    kendall: Tensor              # Kendall's tau of the two maps (1 when unqualified)
    criterion: Tensor            # the selection's criterion of the kept iterate (lower: stronger), restarts compare
    qualified: Tensor            # bool: some iterate kept the label and lowered the criterion
    moved: Tensor                # bool: some iterate differed from the original image
    support_covered: Tensor      # bool: the attacked top-k holds every nonzero pixel of the original saliency
    image_size: tuple[int, int]  # (H, W) of the maps
    restarts_run: int = 1


def keep_stronger(a: AttributionAttackResult, b: AttributionAttackResult) -> AttributionAttackResult:
    """Per image, the restart with the lower criterion (the reference's argmin over restarts; ties keep the first)."""
    take_b = b.criterion < a.criterion
    merged = {}
    for name, value in a.__dict__.items():
        other = b.__dict__[name]
        if isinstance(value, Tensor) and value.shape[:1] == take_b.shape:
            mask = take_b.view(-1, *([1] * (value.dim() - 1)))
            merged[name] = torch.where(mask, other, value)
        else:
            merged[name] = value
    return AttributionAttackResult(**merged)
