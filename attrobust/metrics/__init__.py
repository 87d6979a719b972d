"""Attribution-robustness metrics between batches of maps: (N, D) tensors in, N values out.

`METRICS.build(entry)` builds one metric from a name or a mapping (`{name: lens_recall, window: 5}`); the contract is
`attrobust.metrics.base.Metric`. Every module of this package is imported here, so a metric registers itself by
existing. The math helpers (`kendall_tau_b`, `top_k_mask`, ...) are shared with the attacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrobust.metrics.base import MapSpec, Metric
from attrobust.registry import Registry, build_listed, import_components

METRICS: Registry[Metric] = Registry("metric")

import_components(__name__, __path__)

from attrobust.metrics.center import center_of_mass, center_shift  # noqa: E402
from attrobust.metrics.ranks import average_ranks, kendall_tau_b, spearman_rho  # noqa: E402
from attrobust.metrics.topk import top_k_indices, top_k_mask, topk_intersection  # noqa: E402


def build_metrics(entries: Sequence[str | Mapping[str, Any]], key: str = "eval.metrics") -> list[Metric]:
    """The metrics of a list of names or mappings; one line naming the entry if it is not a known metric, and no
    two entries with the same column."""
    return build_listed(METRICS, entries, key, "[topk_intersection,kendall]")


def metric_name_of(column: str) -> str | None:
    """The registered metric whose column (or a setting of it) `column` is (None: not a metric column)."""
    return next((n for n in sorted(METRICS.names(), key=len, reverse=True)
                 if column == n or column.startswith(n + "_")), None)


def heading_of(column: str) -> str | None:
    """The table heading of a metric column written by this attrobust (None: not a metric column)."""
    name = metric_name_of(column)
    if name is None:
        return None
    metric = METRICS.get(name)
    return getattr(metric, "heading", name) + column[len(name):].replace("_", " ")


__all__ = ["METRICS", "MapSpec", "Metric", "average_ranks", "build_metrics", "center_of_mass", "center_shift",
           "heading_of", "kendall_tau_b", "metric_name_of", "spearman_rho", "top_k_indices",
           "top_k_mask", "topk_intersection"]
