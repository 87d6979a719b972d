"""The paper-style report of a run or sweep dir: runs found by their `.hydra/` folders, results grouped over seeds.

Its runs and their states are found by `attrobust.reporting.runs.find_runs`.
Rows are grouped by what they measured, so that only seeds are pooled: the dataset, model and reg, the trained model's
settings but its seed (`setting`) and the evaluation's own (`evaluation`: attacks, explainer, images, protocol;
reporting/settings.py), and the attack. Each metric becomes mean, std (sample standard deviation; none for one seed),
its confidence interval (Student's t over seeds; for one seed, its run's bootstrap over images: reporting/intervals.py)
and the number of seeds. The settings that differ between lines (among the lines that have them) become columns named by
their keys (`reg.weight`, `attack.name`, `eval.num_examples`, `experiment`). Rows written before these identities are
grouped by their overrides instead. Failed and missing runs are listed under the table, never dropped silently.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from attrobust.errors import AttrobustError
from attrobust.provenance import config_hash, run_id
from attrobust.reporting.intervals import over_seeds
from attrobust.reporting.latex import latex_escape, latex_table
from attrobust.reporting.merge import merge_directory
from attrobust.reporting.rows import ACCURACY_METRICS, ROW_COLUMNS, attack_key
from attrobust.reporting.runs import NOT_EVALUATED, SHARD, RunRecord, find_runs
from attrobust.reporting.settings import Flat
from attrobust.reporting.sweep_plots import (GROUP_KEYS, MAX_COMPARED, PLOTTED_HEADINGS, comparison_plot, shown_keys,
                                             sweep_axis, sweep_plot)
from attrobust.reporting.tables import FIXED_HEADINGS, ordered_metrics, rich_table, unit_heading

INTERVAL_NOTE = ("± : half-width of the 95 % interval of the mean: Student's t over the seeds of a line, or, for "
                 "one seed, the bootstrap over its images (report.csv: low, high)")
IGNORED_KEYS = ("seed", "hydra.run.dir", "hydra.sweep.dir", "checkpoint", "eval.shard", "eval.num_shards")
IDENTITY_KEYS = ["setting", "evaluation"]  # hashes: what else tells two lines apart (reporting/settings.py)
NAMED_BY_COLUMNS = ("dataset.name", "model.name", "reg.name")  # already columns of their own


@dataclass(frozen=True)
class SweepReport:
    table: pd.DataFrame          # one line per group: keys, then "<metric> mean", "<metric> std", seeds
    runs: list[RunRecord]
    swept: list[str]
    evaluated: frozenset[str] = frozenset()  # run ids with rows in this report (a model evaluated in another folder)

    @property
    def problems(self) -> list[RunRecord]:
        return [run for run in self.runs if run.state not in ("done", SHARD) and not
                (run.state == NOT_EVALUATED and run_id(run.folder) in self.evaluated)]


def sweep_report(folder: Path) -> SweepReport:
    runs = find_runs(folder)
    if not runs:
        raise AttrobustError(f"no runs under {folder} (no .hydra/overrides.yaml); run `attrobust train` first")
    # older rows (no identity hashes) of an `evaluate` job belong to the training run they evaluated (its run_id):
    # they are named by its overrides
    by_run_id = {run_id(run.folder): run.overrides for run in runs}
    frames, described = [], {}
    for run in (r for r in runs if r.state == "done"):
        described.update(run.described)
        for frame in run.results:
            for owner, part in frame.groupby("run_id", sort=False):
                part = part.assign(**{key: part[key].fillna("").astype(str) for key in IDENTITY_KEYS})
                older = part["setting"] == ""
                if older.any():
                    overrides = by_run_id.get(str(owner), run.overrides)
                    kept = {k: v for k, v in overrides.items() if k not in IGNORED_KEYS and k not in ROW_COLUMNS
                            and k.split(".")[0] != "logger"}  # where a run was tracked changes none of its numbers
                    name = f"overrides-{config_hash(kept)}"
                    described[name] = kept
                    part.loc[older, "setting"] = name
                frames.append(part)
    if not frames:
        return SweepReport(pd.DataFrame(), runs, [])
    rows = pd.concat(frames, ignore_index=True)
    swept, values = differing_settings(rows, described)
    for key in swept:
        rows[key] = [_shown(values[(setting, evaluation)].get(key, "-"))
                     for setting, evaluation in zip(rows["setting"], rows["evaluation"], strict=True)]
    return SweepReport(aggregate(rows, swept), runs, swept, frozenset(rows["run_id"].astype(str)))


def _shown(value: object) -> str:
    """A setting as the user types it (null, true, 0.1)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def differing_settings(rows: pd.DataFrame, described: dict[str, Flat]) -> tuple[list[str], dict[tuple[str, str], Flat]]:
    """The keys whose values differ between the lines' settings (among the lines that have the key; `experiment`
    first, then in the order the settings list them), and each (setting, evaluation) pair's settings."""
    pairs = rows[IDENTITY_KEYS].drop_duplicates().itertuples(index=False, name=None)
    values = {(setting, evaluation): {**described.get(setting, {}), **described.get(evaluation, {})}
              for setting, evaluation in pairs}
    keys: list[str] = []
    for settings in values.values():
        keys += [key for key in settings if key not in keys and key not in NAMED_BY_COLUMNS]
    differing = [key for key in keys
                 if len({repr(settings[key]) for settings in values.values() if key in settings}) > 1]
    differing.sort(key=lambda key: key != "experiment")  # stable: the preset's name first
    return differing, values


def aggregate(rows: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of each metric, one line per group and attack (latest evaluation of a run wins per
    metric). `attack` names the attack and its explainer (`attack_key`: pgd, topk of ig(100), random_sign of gradcam,
    ...); accuracy, a property of the model, stands on the line of each attribution attack of its group."""
    group = GROUP_KEYS + IDENTITY_KEYS + swept
    rows = rows.assign(attack=rows["attack"].astype(str).map(attack_key),
                       **{key: rows[key].fillna("") if key in rows else "" for key in IDENTITY_KEYS})
    order = rows[group + ["attack"]].drop_duplicates()  # lines in the order the runs wrote them
    rows = rows.sort_values("n", kind="stable")  # per run and metric, the row over the most images wins
    for bound in ("low", "high"):
        rows = rows.assign(**{bound: rows[bound] if bound in rows else float("nan")})
    keys_of_run = group + ["attack", "run_id", "metric"]
    per_run = rows.groupby(keys_of_run, sort=False).tail(1).sort_index()  # whole rows, as the runs wrote them
    per_run = per_run[keys_of_run + ["value", "low", "high"]].reset_index(drop=True)
    is_accuracy = per_run["metric"].isin(ACCURACY_METRICS)
    accuracy, others = per_run[is_accuracy], per_run[~is_accuracy]
    if len(accuracy) and len(others):
        lines = others[group + ["attack"]].drop_duplicates()
        spread = accuracy.drop(columns="attack").merge(lines, on=group)
        alone = accuracy.merge(lines[group].drop_duplicates(), on=group, how="left", indicator=True)
        alone = alone[alone["_merge"] == "left_only"].drop(columns="_merge")
        per_run = pd.concat([others, spread[per_run.columns], alone[per_run.columns]], ignore_index=True)
    keys = group + ["attack"]
    units = dict(zip(rows["metric"], rows["unit"].fillna("").astype(str), strict=True))  # "" is read back as NaN
    stats = interval_stats(per_run, keys + ["metric"])
    wide = stats.set_index(keys + ["metric"])[["mean", "std", "low", "high"]].unstack("metric")  # groups that ran
    lines = order.merge(stats[keys].drop_duplicates(), on=keys)  # the lines that have values, in the order they ran
    wide = wide.reindex(pd.MultiIndex.from_frame(lines))
    table = pd.DataFrame(index=wide.index)
    for metric in ordered_metrics(list(stats["metric"])):
        name = unit_heading(metric, units.get(metric, ""))
        for what in ("mean", "std", "low", "high"):
            table[f"{name} {what}"] = wide[(what, metric)]
    table["seeds"] = per_run.groupby(keys, sort=False)["run_id"].nunique().reindex(table.index)
    table = table.reset_index()
    natural = rows[rows["metric"] == "natural_accuracy"]
    if len(natural):  # how many test images NA and AA count (attacks on explanations: the `scored` count)
        images = natural.groupby(group, sort=False)["n"].max().rename("NA n").reset_index()
        table = table.merge(images, on=group, how="left")
    return table


def interval_stats(per_run: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per line: the mean and std over its runs, and its interval: Student's t over the runs' values for two or more
    seeds, the one run's own bootstrap interval over images for one (reporting/intervals.py)."""
    stats = per_run.groupby(keys, sort=False).agg(mean=("value", "mean"), std=("value", "std"),
                                                  seeds=("value", "count"), run_low=("low", "first"),
                                                  run_high=("high", "first")).reset_index()
    bounds = [over_seeds(values) for _, values in per_run.groupby(keys, sort=False)["value"]]
    several = stats["seeds"] >= 2
    stats["low"] = [low if many else run_low for (low, _), many, run_low in
                    zip(bounds, several, stats["run_low"], strict=True)]
    stats["high"] = [high if many else run_high for (_, high), many, run_high in
                     zip(bounds, several, stats["run_high"], strict=True)]
    return stats.drop(columns=["seeds", "run_low", "run_high"])


def paper_table(report: SweepReport) -> pd.DataFrame:
    """'mean ± half-width' strings for Markdown and LaTeX (the line's interval: over seeds, or over the images of its
    one run, `interval_stats`; the mean alone where there is none, e.g. one run written before intervals): NA and
    AA, every measure in its headline (strict) accounting, the reference accounting of the first two, and the scored,
    unqualified and unmoved counts (`_shown_headings`); report.csv holds every column."""
    table = report.table
    keys = GROUP_KEYS + shown_keys(report) + ["attack"]
    out = table[keys].copy()
    for name in _shown_headings(table):
        digits = 0 if name in FIXED_HEADINGS.values() else 2 if name.endswith(("(%)", "(px)")) else 4
        halves = (table[f"{name} high"] - table[f"{name} low"]) / 2 if f"{name} low" in table else \
            pd.Series(float("nan"), index=table.index)
        out[name] = [_mean_std(mean, half, digits) for mean, half in zip(table[f"{name} mean"], halves, strict=True)]
    if "NA n" in table:
        out["NA n"] = [("-" if pd.isna(n) else str(int(n))) for n in table["NA n"]]
    out["seeds"] = table["seeds"]
    return out


def _shown_headings(table: pd.DataFrame) -> list[str]:
    """Accuracy, every measure in its headline (strict) accounting, the reference accounting of the first two
    attribution metrics (the paper's IN and CO by default, labelled "ref"), and the scored, unqualified and unmoved
    counts that tell the two apart; report.csv keeps every column."""
    names = [column.removesuffix(" mean") for column in table.columns if column.endswith(" mean")]
    hidden = set(FIXED_HEADINGS.values()) - {"scored", "unqualified", "unmoved"}
    reference = [name for name in names if _is_reference(name)]
    return [name for name in names if name not in hidden and (not _is_reference(name) or name in reference[:2])]


def _is_reference(heading: str) -> bool:
    return heading.endswith(" ref") or " ref (" in heading


def _mean_std(mean: float, half: float, digits: int) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if pd.isna(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def problems_text(report: SweepReport) -> str:
    lines = [f"- {run.state}: {run.folder} ({run.reason})" for run in report.problems]
    return "\n".join(lines)


def write_report(report: SweepReport, folder: Path) -> list[Path]:
    """report.csv (means, stds, intervals, seeds), report.md and report.tex (mean ± half-width of the interval, failed
    and missing runs listed), and report.png when a numeric key was swept. Returns the files written."""
    from attrobust.atomic import write_text_atomic

    written = [folder / "report.csv", folder / "report.md", folder / "report.tex"]
    problems = problems_text(report)
    table = paper_table(report) if len(report.table) else pd.DataFrame()
    write_text_atomic(written[0], report.table.to_csv(index=False, float_format="%.6g"))
    markdown = table.to_markdown(index=False, disable_numparse=True) if len(table) else "(no finished runs)"
    runs = f"{len(report.runs)} run(s): {sum(r.state == 'done' for r in report.runs)} done"
    listed = f"\nNot in the table:\n{problems}\n" if problems else ""
    write_text_atomic(written[1], f"{markdown}\n\n{INTERVAL_NOTE}\n\n{runs}\n{listed}")
    latex = latex_table(table) if len(table) else ""
    note = "".join(f"% {run.state}: {latex_escape(str(run.folder))}\n" for run in report.problems)
    write_text_atomic(written[2], latex + note)
    for name in ("report.png", "report.pdf", "compare.png", "compare.pdf"):  # an earlier report's figures
        (folder / name).unlink(missing_ok=True)
    x = sweep_axis(report)
    if x is not None:
        written += [folder / "report.png", folder / "report.pdf"]
        sweep_plot(report, x, written[-2])
    if 2 <= len(report.table) <= MAX_COMPARED and any(f"{name} mean" in report.table for name in PLOTTED_HEADINGS):
        written += [folder / "compare.png", folder / "compare.pdf"]
        comparison_plot(report, written[-2])
    return written


def print_report(directory: Path, console: Console) -> None:
    """Merge the finished shards of any sharded evaluation not merged yet (`attrobust merge`), then build, write and
    print the report of `directory`; failed and missing runs as warnings on stderr."""
    for folder, _ in merge_directory(directory, only_unmerged=True):
        console.print(f"merged the shards of an evaluation into {folder}")
    result = sweep_report(directory)
    written = write_report(result, directory)
    if len(result.table):
        console.print(rich_table(paper_table(result), f"{directory}"))
    for run in result.problems:
        kind = "note" if run.state == NOT_EVALUATED else "warning"
        print(f"{kind}: {run.state} run {run.folder}: {run.reason}", file=sys.stderr)
    console.print(f"wrote {', '.join(str(path) for path in written)}")
