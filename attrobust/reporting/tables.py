"""Tables made from result rows: CSV and Markdown files, and a Rich table for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.table import Table

from attrobust.atomic import write_text_atomic
from attrobust.metrics import heading_of
from attrobust.faithfulness import heading_of as faithfulness_heading_of
from attrobust.stability import heading_of as stability_heading_of
from attrobust.reporting.rows import ACCURACY_METRICS, COUNT_METRICS, attack_key
from attrobust.reporting.settings import Flat, write_settings

RESULTS_FILE = "results.csv"
# Headings of the paper's Table 1 (NA natural accuracy, AA accuracy under attack) and of the image counts. An
# attribution metric's heading is its own (`attrobust.metrics`, e.g. IN, CO, LENS-R) for the strict accounting
# (`<metric>_strict`: the images with a counted iterate, which cannot overstate robustness), the headline, and
# "<heading> ref" for the RAR reference's accounting (every scored image, one without a counted iterate scoring as
# unchanged maps), kept for fidelity.
FIXED_HEADINGS = {"natural_accuracy": "NA", "adversarial_accuracy": "AA", "certified_accuracy_l2": "CA-L2",
                  "certified_accuracy_linf": "CA-Linf", "images_scored": "scored",
                  "images_unqualified": "unqualified", "images_unmoved": "unmoved",
                  "images_support_covered": "top-k covers saliency"}
TABLE_INDEX = ["dataset", "model", "reg", "attack"]


def heading(metric: str) -> str:
    """The table heading of a result row's metric name."""
    if metric in FIXED_HEADINGS:
        return FIXED_HEADINGS[metric]
    if "@" in metric:  # a measure at a stage of a part (`<measure>@<stage>`, e.g. parts/randomisation.py)
        measure, stage = metric.split("@", 1)
        named = heading_of(measure) or stability_heading_of(measure) or faithfulness_heading_of(measure)
        return f"{named or measure} @{stage}"
    base = metric.removesuffix("_strict")
    attribution = heading_of(base)
    if attribution is not None:
        return attribution if base != metric else f"{attribution} ref"
    return stability_heading_of(base) or faithfulness_heading_of(base) or base


def ordered_metrics(metrics: list[str]) -> list[str]:
    """Accuracy first, then attribution metrics in the order they were computed in the strict accounting (the
    headline), then in the reference's, then counts."""
    rank = {name: position for position, name in enumerate(ACCURACY_METRICS + COUNT_METRICS)}

    def key(item: tuple[int, str]) -> tuple[int, int]:
        position, metric = item
        if metric in ACCURACY_METRICS:
            return (0, rank[metric])
        if metric in COUNT_METRICS:
            return (3, rank[metric])
        return (1 if metric.endswith("_strict") else 2, position)

    return [metric for _, metric in sorted(enumerate(dict.fromkeys(metrics)), key=key)]


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (dataset, model, reg, attack): the mean of each metric over runs, headed 'NA (%)' etc.

    Accuracy is a property of the model: when a run also attacked attributions, NA and AA stand on the line of each
    attribution attack, whose `attack` names both ('pgd ...; topk of ig(100) ...')."""
    rows = rows.assign(unit=rows["unit"].fillna(""))  # "" is read back from a CSV as NaN
    accuracy = rows[rows["metric"].isin(ACCURACY_METRICS)]
    others = rows[~rows["metric"].isin(ACCURACY_METRICS)]
    if len(accuracy) and len(others):
        keys = TABLE_INDEX[:-1]
        described = accuracy.groupby(keys, sort=False)["attack"].first().rename("prediction_attack").reset_index()
        others = others.merge(described, on=keys, how="left")
        others["attack"] = others["prediction_attack"].fillna("").map(lambda a: f"{a}; " if a else "") + \
            others["attack"]
        lines = others[TABLE_INDEX].drop_duplicates()
        accuracy = accuracy.drop(columns="attack").merge(lines, on=keys)
        rows = pd.concat([accuracy[rows.columns], others[rows.columns]], ignore_index=True)
    for bound in ("low", "high"):  # files written before the intervals have none
        rows = rows.assign(**{bound: rows[bound] if bound in rows else float("nan")})
    grouped = rows.groupby(TABLE_INDEX + ["metric", "unit"], sort=False)
    stats = grouped.agg(value=("value", "mean"), runs=("run_id", "nunique"), low=("low", _one_run),
                        high=("high", _one_run), n=("n", _one_run)).reset_index()
    pivots = {what: stats.pivot_table(index=TABLE_INDEX, columns="metric", values=what, sort=False, dropna=False)
              for what in ("value", "low", "high", "n")}
    table = pivots["value"].dropna(how="all")  # lines that never ran; a measure with no value stays (n/a)
    ordered = [m for m in ordered_metrics(list(stats["metric"])) if m in table.columns]
    units = dict(zip(stats["metric"], stats["unit"], strict=False))
    columns = {}
    for metric in ordered:
        name = unit_heading(metric, units.get(metric, ""))
        columns[name] = table[metric]
        if metric in pivots["low"] and pivots["low"][metric].reindex(table.index).notna().any():
            for what in ("low", "high", "n"):  # the interval over images of a line of one run
                columns[f"{name} {what}"] = pivots[what][metric].reindex(table.index)
    table = pd.DataFrame(columns, index=table.index)
    runs = stats.groupby(TABLE_INDEX, sort=False)["runs"].max()
    table["runs"] = runs.reindex(table.index).astype(int)
    return table.reset_index()


def _one_run(values: pd.Series) -> float:
    """A line's interval bound (or n): that of its one run; a line pooling runs has none here (`report` gives it)."""
    return float(values.iloc[0]) if len(values) == 1 else float("nan")


def unit_heading(metric: str, unit: str) -> str:
    name = heading(metric)
    return f"{name} ({unit})" if unit and unit != "count" else name


def write_results(rows: pd.DataFrame, folder: Path, settings: tuple[Flat, Flat] | None = None,
                  problems: Sequence[str] = ()) -> pd.DataFrame:
    """Write `results.csv` (rows), `table.csv` and `table.md` (the summary, then `problems`: what keeps numbers of
    it from meaning what they seem to) atomically, and `settings.json` (the rows' training and evaluation settings,
    when given) before them; return the summary."""
    table = summary_table(rows)
    if settings is not None:
        write_settings(folder, *settings)
    write_text_atomic(folder / RESULTS_FILE, rows.to_csv(index=False))
    write_text_atomic(folder / "table.csv", table.to_csv(index=False, float_format="%.6g"))
    note = f"\n{INTERVAL_NOTE}\n" if any(str(column).endswith(" low") for column in table.columns) else ""
    note += "".join(f"\nWarning: {line}\n" for line in problems)
    write_text_atomic(folder / "table.md", displayed(table).to_markdown(index=False, disable_numparse=True) + "\n" +
                      note)
    return table


COUNT_HEADINGS = (*(FIXED_HEADINGS[metric] for metric in COUNT_METRICS), "runs", "seeds")
INTERVAL_NOTE = ("± : half-width of the bootstrap interval over the images (eval.confidence, 95 % by default); "
                 "table.csv has each interval's low, high and n")


def displayed(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as strings for reading: counts as integers, percentages and pixels to 2 decimals, correlations and
    other unitless values to 4; a value with an interval as `mean ± half-width` (its low, high and n columns, kept in
    table.csv, are left out)."""
    out = table.copy()
    bounds = [column for column in out.columns if f"{column} low" in out.columns]
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) or str(column).endswith((" low", " high", " n")):
            continue
        name = str(column)
        digits = 0 if name in COUNT_HEADINGS else 2 if name.endswith(("(%)", "(px)")) else 4
        halves = (out[f"{column} high"] - out[f"{column} low"]) / 2 if column in bounds else \
            pd.Series(float("nan"), index=out.index)
        out[column] = [("n/a" if pd.isna(v) else f"{v:.{digits}f}" + ("" if pd.isna(h) else f" ± {h:.{digits}f}"))
                       for v, h in zip(out[column], halves, strict=True)]
    return out.drop(columns=[f"{column} {what}" for column in bounds for what in ("low", "high", "n")])


def rich_table(table: pd.DataFrame, title: str, max_columns: int = 9, max_lines: int = 6) -> Table:
    """The table for a terminal; a wide table of a few lines is shown transposed (one metric per line, one column per
    line of the table, headed by its attack: the full description is in table.md)."""
    numeric = {str(column) for column in table.columns if pd.api.types.is_numeric_dtype(table[column])}
    shown = displayed(table)
    if len(shown.columns) > max_columns and len(table) <= max_lines:
        if len(table) == 1:
            headers = ["value"]
        else:
            shown = shown.drop(columns="attack")
            headers = [attack_key(str(a)) for a in table["attack"]]
            headers = [h if headers.count(h) == 1 else f"{h} ({i + 1})" for i, h in enumerate(headers)]
        shown = pd.DataFrame({"": [str(c) for c in shown.columns],
                              **{h: list(shown.iloc[i]) for i, h in enumerate(headers)}})
        numeric = set(headers)
    rich = Table(title=title)
    for column in shown.columns:
        rich.add_column(str(column), justify="right" if str(column) in numeric else "left")
    for record in shown.itertuples(index=False):
        rich.add_row(*(_format(value) for value in record))
    return rich


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
