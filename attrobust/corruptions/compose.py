"""A composition of corruptions (as in Mason et al., "Modularity Trumps Invariance for Compositional Robustness"):
each of `of` applied in turn at the same severity, each with its own random draws."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from attrobust.corruptions import CORRUPTIONS
from attrobust.corruptions.base import Corruption


@CORRUPTIONS.register("compose")
@dataclass(frozen=True)
class Compose(Corruption):
    of: tuple[str, ...] = ("rotate", "gaussian_noise")
    parts: tuple[Corruption, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [name for name in CORRUPTIONS.names() if name != "compose"]
        if len(self.of) < 2 or len(set(self.of)) != len(self.of) or not set(self.of) <= set(names):
            raise ValueError(f"of must list two or more different corruptions of {', '.join(names)}, got "
                             f"{list(self.of)}")
        object.__setattr__(self, "parts", tuple(CORRUPTIONS.build({"name": name}) for name in self.of))

    def check_fits(self, image_shape: tuple[int, ...]) -> None:
        for part in self.parts:
            part.check_fits(image_shape)

    def corrupt(self, x: Tensor, severity: int, seed: int, indices: Tensor) -> Tensor:
        for part in self.parts:
            x = part.corrupt(x, severity, seed, indices)
        return x

    @property
    def column(self) -> str:
        return "+".join(self.of)
