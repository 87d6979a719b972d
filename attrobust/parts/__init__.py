"""The parts of an evaluation (`attrobust.parts.base.EvaluationPart`): accuracy with its certificate, attacks on
explanations with their controls, stability, faithfulness, the model-randomisation sanity check. Every module here
is imported, so a part registers itself by existing; `configured_parts` gives those a command's config asks for, in
their order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrobust.parts.base import EvaluationPart, Measured, Request
from attrobust.registry import Registry, import_components

if TYPE_CHECKING:
    from attrobust.tasks.restore import TrainedModel

PARTS: Registry[EvaluationPart] = Registry("evaluation part")

import_components(__name__, __path__)


def part_classes() -> list[type[EvaluationPart]]:
    """Every registered part, in position order."""
    return sorted((PARTS.get(name) for name in PARTS.names()), key=lambda part: part.position)  # type: ignore[misc]


def per_image_files() -> dict[str, str]:
    """Part name -> its per-image file."""
    return {part.registry_name: part.file for part in part_classes()}


def part_settings() -> dict[str, type[EvaluationPart]]:
    """`eval.<setting>` -> the part that owns it."""
    return {part.setting: part for part in part_classes() if part.setting is not None}


def configured_parts(trained: TrainedModel, request: Request) -> list[EvaluationPart]:
    """The parts the command's config asks for, in order, each with its settings checked."""
    configured = (part.configured(trained, request) for part in part_classes())
    return [part for part in configured if part is not None]


__all__ = ["PARTS", "EvaluationPart", "Measured", "Request", "configured_parts", "part_classes", "part_settings",
           "per_image_files"]
