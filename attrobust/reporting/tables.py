"""Tables made from result rows: CSV and Markdown files, and a Rich table for the terminal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.table import Table

from attrobust.atomic import write_text_atomic

RESULTS_FILE = "results.csv"
# Column headings of the paper's Table 1 (NA natural accuracy, AA accuracy under attack, IN top-k intersection,
# CO Kendall's tau), in display order; other metrics follow under their own names.
METRIC_HEADINGS = {"natural_accuracy": "NA", "adversarial_accuracy": "AA", "topk_intersection": "IN",
                   "kendall": "CO", "spearman": "Spearman", "center_shift": "shift",
                   "topk_intersection_strict": "IN strict", "kendall_strict": "CO strict",
                   "spearman_strict": "Spearman strict", "images_scored": "scored",
                   "images_unqualified": "unqualified", "images_unmoved": "unmoved",
                   "images_support_covered": "top-k covers saliency"}
TABLE_INDEX = ["dataset", "model", "reg", "attack"]


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (dataset, model, reg, attack): the mean of each metric over runs, headed 'NA (%)' etc."""
    grouped = rows.groupby(TABLE_INDEX + ["metric", "unit"], sort=False)
    stats = grouped.agg(value=("value", "mean"), runs=("run_id", "nunique")).reset_index()
    table = stats.pivot_table(index=TABLE_INDEX, columns="metric", values="value", sort=False)
    ordered = [m for m in METRIC_HEADINGS if m in table.columns] + \
        [m for m in stats["metric"].unique() if m not in METRIC_HEADINGS]
    units = dict(zip(stats["metric"], stats["unit"], strict=False))
    table = table[ordered].rename(columns={m: _heading(m, units.get(m, "")) for m in ordered})
    runs = stats.groupby(TABLE_INDEX, sort=False)["runs"].max()
    table["runs"] = runs.reindex(table.index).astype(int)
    return table.reset_index()


def _heading(metric: str, unit: str) -> str:
    name = METRIC_HEADINGS.get(metric, metric)
    return f"{name} ({unit})" if unit and unit != "count" else name


def write_results(rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Write `results.csv` (rows), `table.csv` and `table.md` (the summary) atomically; return the summary."""
    table = summary_table(rows)
    write_text_atomic(folder / RESULTS_FILE, rows.to_csv(index=False))
    write_text_atomic(folder / "table.csv", table.to_csv(index=False, float_format="%.2f"))
    write_text_atomic(folder / "table.md", table.to_markdown(index=False, floatfmt=".2f") + "\n")
    return table


def rich_table(table: pd.DataFrame, title: str, max_columns: int = 9) -> Table:
    """The table for a terminal; a wide table with a single line is shown transposed (one metric per line)."""
    if len(table.columns) > max_columns and len(table) == 1:
        table = pd.DataFrame({"": [str(c) for c in table.columns], "value": list(table.iloc[0])})
    rich = Table(title=title)
    for column in table.columns:
        rich.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(table[column]) else "left")
    for record in table.itertuples(index=False):
        rich.add_row(*(_format(value) for value in record))
    return rich


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
