"""The one base of every per-image number attrobust reports: map metrics (`attrobust.metrics`), stability
(`attrobust.stability`), faithfulness (`attrobust.faithfulness`) and whatever family comes next.

A measure declares what tables, reports and checks read of it, once: its registered name (set by its registry when
its class is registered, so a component states its name once), the table `heading`, the `unit` ("%": a fraction in
[0, 1] shown in percent; "" or "px"), whether a higher value is better (`higher_is_better`: a more robust, more
stable or more faithful explanation), its `family`, and its cost per image in network passes (`passes`: forward
passes and explainer calls, each of which costs the explainer's own passes; the measure cards of the catalogue).
Each family adds its own call contract in its base class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Measure:
    registry_name: ClassVar[str] = ""  # set by `Registry.register`
    heading: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    family: ClassVar[str] = ""

    @property
    def scale(self) -> float:
        """The factor from a per-image value to what rows and tables show: 100 for a measure in %."""
        return 100.0 if self.unit == "%" else 1.0

    @property
    def column(self) -> str:
        """The name of its per-image column and result rows (the registry name; families whose settings may differ
        within one evaluation add them, see `attrobust.metrics.base`)."""
        return self.registry_name

    def passes(self) -> dict[str, int]:
        """Per image, at these settings: forward passes of the model and explainer calls the measure makes itself
        (none for a map metric: it compares maps the attack already computed)."""
        return {"forward": 0, "explainer": 0}

    def changed_settings(self) -> list[tuple[str, object]]:
        """The settings whose values differ from their defaults, in field order."""
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.default is not dataclasses.MISSING and getattr(self, f.name) != f.default]
