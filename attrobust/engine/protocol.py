"""`eval.protocol`: how attacks on explanations are run and which measures head the table, as one object chosen by
name.

- `reference`: the RAR reference's attack (from the image itself) and its accounting (an image without a counted
  iterate scores as unchanged maps); the metrics are `eval.metrics` as listed.
- `robust`: every attack on explanations starts from a random point of the eps-ball, and LENS recall is added to
  `eval.metrics` when it is not listed. The strict accounting (images with a counted iterate) is the headline under
  both protocols (reporting/tables.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from attrobust.errors import AttrobustError, choices
from attrobust.metrics import Metric, build_metrics

A = TypeVar("A")


@dataclass(frozen=True)
class Protocol:
    name: str
    random_start: bool  # every attack on explanations starts from a random point of the eps-ball
    adds_lens_recall: bool  # LENS recall joins eval.metrics when it is not listed

    def metrics(self, entries: Sequence[str | Mapping[str, Any]]) -> list[Metric]:
        """`eval.metrics` as this protocol scores them."""
        metrics = build_metrics(entries)
        if self.adds_lens_recall and not any(m.column.startswith("lens_recall") for m in metrics):
            metrics += build_metrics(["lens_recall"])
        return metrics

    def attack(self, attack: A) -> A:
        """The attack on explanations as this protocol runs it (a dataclass with `random_start`)."""
        if self.random_start and not attack.random_start:  # type: ignore[attr-defined]
            return dataclasses.replace(attack, random_start=True)  # type: ignore[type-var]
        return attack


PROTOCOLS = {protocol.name: protocol for protocol in (Protocol("reference", random_start=False, adds_lens_recall=False),
                                                      Protocol("robust", random_start=True, adds_lens_recall=True))}


def protocol_named(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise AttrobustError(f"eval.protocol={name} is not a protocol; choose one of: {choices(PROTOCOLS)}")
    return PROTOCOLS[name]
