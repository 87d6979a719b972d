"""Sharded evaluation: which units of work (accuracy batches, attack chunks, stability calls) one shard does.

An evaluation is split into the same units whether it runs whole or in shards: accuracy batches of
`eval.batch_size` test images, attack chunks of the correctly classified images, stability calls; a small part is cut
in at least `MIN_UNITS` units (of one image at least), so that every shard of a small evaluation gets work. Shard i of
n takes the units i, i + n, i + 2n, ... of each part. Every unit draws its random numbers from a seed of its own (the
run's seed and the unit's first position, `unit_seed`) and sees the same images in the same batch, so the per-image rows
of n shards, put back in the unsharded order, are the rows of the unsharded run: bitwise on one device with the same
threads, whatever n. Not when an attack chunk ran out of device memory and was done in pieces: each piece draws from
its own seed, so that shard's random starts and baselines differ (`attrobust merge` warns).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based); `Shard()` is the whole evaluation."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard must be in 0 .. {self.count - 1} (num_shards={self.count}), got {self.index}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def units(self, total: int, size: int) -> Iterator[tuple[int, int]]:
        """This shard's units among `total` positions: (first, end) of units index, index + count, ... Units hold
        `size` positions, fewer when that would give fewer than MIN_UNITS units (`unit_size`), whole or sharded."""
        size = unit_size(total, size)
        starts = range(0, total, size)
        for unit in range(self.index, len(starts), self.count):
            yield starts[unit], min(starts[unit] + size, total)

    def describe(self) -> str:
        return "whole" if self.whole else f"shard {self.index} of {self.count}"


WHOLE = Shard()
MIN_UNITS = 8  # a part of a small evaluation is cut in at least this many units, so 8 shards all get work


def unit_size(total: int, size: int) -> int:
    """`size`, or less for a small part: at most ceil(total / MIN_UNITS), at least 1. It depends on the part's size
    alone, never on the shard count, so the units (and their seeds) of a sharded run are the whole run's."""
    return max(1, min(size, -(-total // MIN_UNITS)))


def unit_seed(seed: int, start: int, part: str = "") -> int:
    """The seed of the unit (chunk, batch) whose first image is at `start`: independent of the units run before it,
    so a resumed run and every sharding draw the same numbers for it. `part` tells the parts of one evaluation apart
    (accuracy batch 0 and attack chunk 0 draw different numbers); the attacks' chunks use none, as before sharding."""
    digest = hashlib.sha256(f"{seed}:{start}{':' + part if part else ''}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
