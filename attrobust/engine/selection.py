"""Which test images an evaluation looks at: `eval.indices`, `eval.classes`, `eval.sample`, then `eval.num_examples`.

Each image keeps its index in the whole test split (`ImageSet.ids`), so per-image rows, figures and `explain` name
the same image whatever selected it.
"""

from __future__ import annotations

import torch

from attrobust.data.base import ImageSet
from attrobust.engine.evaluate import EvalSettings
from attrobust.errors import AttrobustError


def choose_images(data: ImageSet, settings: EvalSettings, num_classes: int, seed: int) -> ImageSet:
    """The test images to evaluate: the listed indices (or all), of the listed classes, a seeded sample of them, the
    first `num_examples`. A selection that names no image, or an image or class that does not exist, is refused."""
    positions = torch.arange(len(data))
    if settings.indices is not None:
        outside = [i for i in settings.indices if not 0 <= i < len(data)]
        if outside:
            raise AttrobustError(f"eval.indices: {outside[:5]} not among the {len(data)} test images; choose indices "
                                 f"in 0 .. {len(data) - 1}")
        positions = torch.tensor(list(dict.fromkeys(settings.indices)), dtype=torch.int64)
    if settings.classes is not None:
        unknown = [c for c in settings.classes if not 0 <= c < num_classes]
        if unknown:
            raise AttrobustError(f"eval.classes: {unknown} not among the {num_classes} classes; choose labels in "
                                 f"0 .. {num_classes - 1}")
        positions = positions[torch.isin(data.labels[positions], torch.tensor(settings.classes))]
        if len(positions) == 0:
            raise AttrobustError(f"eval.classes={list(settings.classes)}: no selected test image has these labels")
    if settings.sample is not None:
        if settings.sample > len(positions):
            raise AttrobustError(f"eval.sample={settings.sample} is more than the {len(positions)} selected test "
                                 f"images; choose eval.sample <= {len(positions)} (or null for all)")
        order = torch.randperm(len(positions), generator=torch.Generator().manual_seed(seed))
        positions = positions[order[:settings.sample].sort().values]
    if settings.num_examples is not None:
        positions = positions[:settings.num_examples]
    return data.select(positions)
