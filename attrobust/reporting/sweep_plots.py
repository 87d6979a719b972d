"""The figures of a sweep's report: `compare.png` (each line's paper columns with their spread over seeds) and, when
the sweep varies one number, `sweep.png` (each paper column against it, a log axis over more than a decade)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from attrobust.reporting.sweep import SweepReport

GROUP_KEYS = ["dataset", "model", "reg"]  # rows of the paper's table; the attack settings are in each run's rows
PLOTTED_HEADINGS = ("NA (%)", "AA (%)", "IN (%)", "CO")  # the paper's columns, drawn against a swept number
MAX_COMPARED = 200  # lines of compare.png at most (more would not be read, and passes matplotlib's pixel limit)


def shown_keys(report: SweepReport) -> list[str]:
    """The differing settings a reader needs: all of them, except those a preset's name already says (values that
    never differ between lines of one `+experiment` preset); report.csv keeps every one."""
    table = report.table
    if "experiment" not in report.swept or table.empty:
        return list(report.swept)
    return [key for key in report.swept if key == "experiment" or table.groupby("experiment")[key].nunique().max() > 1]


def line_label(report: SweepReport, line: pd.Series) -> str:
    """A line of the report in a reader's words: its preset (or reg and model), the values that tell it apart, and
    its attack."""
    method = str(line["experiment"]) if "experiment" in line and line["experiment"] != "-" else \
        f"{line['reg']} ({line['model']})"
    values = ", ".join(f"{key}={line[key]}" for key in shown_keys(report) if key != "experiment" and line[key] != "-")
    return f"{method}{' [' + values + ']' if values else ''}: {line['attack']}"


def comparison_plot(report: SweepReport, path: Path) -> None:
    """One panel per paper measure (NA, AA, IN, CO; the headline accounting), one row per line of the report: the
    mean over seeds with a bar of +-1 sample standard deviation (none for one seed), and the seed count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attrobust.reporting.figures import save_figure

    table = report.table
    metrics = [name for name in PLOTTED_HEADINGS if f"{name} mean" in table]
    labels = [f"{line_label(report, line)} (seeds {int(line['seeds'])})" for _, line in table.iterrows()]
    label_width = 0.075 * max(len(label) for label in labels)  # inches of 8-point text
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + label_width + 0.5,
                                                          0.45 * len(table) + 1.6), squeeze=False, sharey=True)
    rows = list(range(len(table)))[::-1]  # the report's first line on top
    for axis, name in zip(axes[0], metrics, strict=True):
        means, spreads = table[f"{name} mean"], table[f"{name} std"].fillna(0)
        axis.errorbar(means, rows, xerr=spreads, fmt="o", capsize=3, color="black", ecolor="gray")
        axis.set_title(name, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(rows)
    axes[0][0].set_yticklabels(labels, fontsize=8)
    figure.suptitle("mean over seeds, bars: +-1 sample standard deviation (none for one seed)", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def sweep_axis(report: SweepReport) -> str | None:
    """The first differing setting of the method or its threat model whose values are all numbers (reg.weight,
    threat.eps), the x axis of the sweep plot (the attacks', explainer's and eval settings, such as the number of
    images, are not a sweep of the method)."""
    for key in (key for key in report.swept if not key.startswith(("eval.", "attack.", "attribution_attack.",
                                                                    "explainer."))):
        values = report.table[key] if key in report.table else []
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            return key
    return None


def log_axis(values: pd.Series) -> bool:
    """A logarithmic axis for positive values that span more than a decade (a weight swept over 0.1 .. 100)."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and bool((numbers > 0).all()) and float(numbers.max()) > 10 * float(numbers.min())


def sweep_plot(report: SweepReport, x: str, path: Path) -> None:
    """One panel per paper metric against `x`, one line per (dataset, model, reg, attack), error bars = std over
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attrobust.reporting.figures import save_figure

    table = report.table.assign(**{x: pd.to_numeric(report.table[x])}).sort_values(x)
    metrics = [name for name in PLOTTED_HEADINGS if f"{name} mean" in table]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    others = [key for key in report.swept if key != x]
    for axis, name in zip(axes[0], metrics, strict=True):
        for _, lines in table.groupby(GROUP_KEYS + others + ["attack"], sort=False):
            first = lines.iloc[0]
            method = str(first["experiment"]) if "experiment" in first and first["experiment"] != "-" else \
                f"{first['reg']} ({first['model']})"
            axis.errorbar(lines[x], lines[f"{name} mean"], yerr=lines[f"{name} std"].fillna(0), marker="o",
                          capsize=3, label=f"{method}: {first['attack']}")
        if log_axis(table[x]):
            axis.set_xscale("log")
        axis.set_xlabel(x)
        axis.set_ylabel(name)
        axis.set_title(name)
    axes[0][0].legend(fontsize=7)
    figure.suptitle("mean over seeds, bars: +-1 sample standard deviation", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)
