"""The paper-style report of a run or sweep dir: runs found by their `.hydra/` folders, results grouped over seeds.

A run is a folder with `.hydra/overrides.yaml` (written by attrobust when a job's work begins, and at once for every
job of a sweep, so a sweep job killed before it started is still found). Its state is
- `done`: it (or an `evaluate/` / `attack/` folder inside it) has a `results.csv`;
- `failed`: it has `failed.txt` (written when the job stopped with an error; the first line says why);
- `not evaluated`: neither, but a finished `model.pt` (trained with `eval_at_end=false`, no `evaluate` yet): listed
  with the command that evaluates it, as a note rather than a warning;
- `missing`: none of these (killed, preempted and not requeued, or still running);
- `unreadable`: a file it needs cannot be read (an empty or truncated `results.csv`, a broken `overrides.yaml`); the
  reason names the file. Such a run is listed, never counted as done.
Rows are grouped by what they measured, so that only seeds are pooled: the dataset, model and reg, the trained
model's settings but its seed (`setting`) and the evaluation's own (`evaluation`: attacks, explainer, images,
protocol; reporting/settings.py), and the attack. Each metric becomes mean, std (sample standard deviation; none for
one seed) and the number of seeds. The settings that differ between lines (among the lines that have them) become
columns named by their keys (`reg.weight`, `attack.name`, `eval.num_examples`, `experiment`). Rows written before
these identities are grouped by their overrides instead. Failed and missing runs are listed under the table, never
dropped silently.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from attrobust.errors import AttrobustError
from attrobust.provenance import config_hash, run_id
from attrobust.reporting.merge import is_finished_shard, merge_directory
from attrobust.reporting.rows import ACCURACY_METRICS, OLD_ROW_COLUMNS, ROW_COLUMNS, attack_key
from attrobust.reporting.settings import Flat, read_settings
from attrobust.reporting.sweep_plots import (GROUP_KEYS, MAX_COMPARED, PLOTTED_HEADINGS, comparison_plot, shown_keys,
                                             sweep_axis, sweep_plot)
from attrobust.reporting.tables import FIXED_HEADINGS, RESULTS_FILE, ordered_metrics, rich_table, unit_heading

FAILED_FILE = "failed.txt"
MODEL_FILE = "model.pt"  # as attrobust.engine.checkpoint.MODEL_FILE (reporting imports nothing from the engine)
NOT_EVALUATED = "not evaluated"
IGNORED_KEYS = ("seed", "hydra.run.dir", "hydra.sweep.dir", "checkpoint", "eval.shard", "eval.num_shards")
SHARD = "shard"
IDENTITY_KEYS = ["setting", "evaluation"]  # hashes: what else tells two lines apart (reporting/settings.py)
NAMED_BY_COLUMNS = ("dataset.name", "model.name", "reg.name")  # already columns of their own


@dataclass(frozen=True)
class RunRecord:
    folder: Path
    overrides: dict[str, str]
    state: str            # done | failed | not evaluated | missing | unreadable | shard (its rows are in a merge)
    reason: str = ""
    results: tuple[pd.DataFrame, ...] = ()  # the rows of every results.csv of a done run
    described: dict[str, Flat] = field(default_factory=dict)  # setting / evaluation hash -> its settings


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


def find_runs(folder: Path) -> list[RunRecord]:
    """Every Hydra job folder under `folder` (itself included), with its state."""
    records = []
    for overrides_file in sorted(folder.rglob(".hydra/overrides.yaml")):
        run = overrides_file.parent.parent
        inside = [folder / part for part in run.relative_to(folder).parents if part != Path(".")]
        if any((parent / ".hydra").is_dir() for parent in inside):
            continue  # an evaluation inside a training run (<run>/evaluate/<time>): its rows belong to that run
        records.append(_record(run, overrides_file))
    return records


def _record(run: Path, overrides_file: Path) -> RunRecord:
    try:
        listed = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []
        if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            raise ValueError("not a list of key=value overrides")
    except (OSError, ValueError, yaml.YAMLError) as error:
        return RunRecord(run, {}, "unreadable", f"broken {overrides_file}: {_first_line(error)}")
    overrides = dict(_split(item) for item in listed)
    result_files = sorted(run.rglob(RESULTS_FILE))
    if result_files:
        frames, described = [], {}
        for path in result_files:
            frame, problem = read_results(path)
            if frame is None:
                return RunRecord(run, overrides, "unreadable", problem)
            frames.append(frame)
            described.update(read_settings(path.parent))
        return RunRecord(run, overrides, "done", results=tuple(frames), described=described)
    if is_finished_shard(run):
        return RunRecord(run, overrides, SHARD)
    failed = run / FAILED_FILE
    if failed.is_file():
        try:
            reason = next(iter(failed.read_text(encoding="utf-8").strip().splitlines()), "") or "empty failed.txt"
        except (OSError, UnicodeDecodeError) as error:
            reason = f"unreadable {failed}: {_first_line(error)}"
        return RunRecord(run, overrides, "failed", reason)
    if (run / MODEL_FILE).is_file():
        return RunRecord(run, overrides, NOT_EVALUATED, f"trained, no results yet: attrobust evaluate checkpoint={run}")
    return RunRecord(run, overrides, "missing", "no results.csv and no failed.txt")


def read_results(path: Path) -> tuple[pd.DataFrame | None, str]:
    """The rows of one results.csv, or None and why it cannot be used (empty, truncated, foreign)."""
    try:  # hashes and ids as text: '012345678901' or '5e1234567890' must not be read as numbers
        frame = pd.read_csv(path, dtype={"run_id": str, "config_hash": str, "setting": str, "evaluation": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        return None, f"unreadable {path}: {_first_line(error)}"
    if list(frame.columns) == OLD_ROW_COLUMNS:  # written before the setting and evaluation hashes
        frame = frame.assign(setting="", evaluation="")
    if list(frame.columns) != ROW_COLUMNS:
        return None, f"unreadable {path}: not an attrobust result file (unexpected columns)"
    # every row names its run, metric and count and ends with the config hash (a value may be empty: no images)
    if frame.empty or frame[["run_id", "metric", "n", "seed", "config_hash"]].isna().any().any():
        return None, f"unreadable {path}: {'no rows' if frame.empty else 'truncated (rows with missing values)'}"
    if not pd.api.types.is_numeric_dtype(frame["value"]):
        return None, f"unreadable {path}: truncated or corrupt (non-numeric values)"
    return frame, ""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


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
                    kept = {k: v for k, v in overrides.items() if k not in IGNORED_KEYS and k not in ROW_COLUMNS}
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
    per_run = rows.groupby(group + ["attack", "run_id", "metric"], sort=False)["value"].last().reset_index()
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
    stats = per_run.groupby(keys + ["metric"], sort=False)["value"].agg(["mean", "std"]).reset_index()
    wide = stats.set_index(keys + ["metric"])[["mean", "std"]].unstack("metric")  # only the groups that ran
    lines = order.merge(stats[keys].drop_duplicates(), on=keys)  # the lines that have values, in the order they ran
    wide = wide.reindex(pd.MultiIndex.from_frame(lines))
    table = pd.DataFrame(index=wide.index)
    for metric in ordered_metrics(list(stats["metric"])):
        name = unit_heading(metric, units.get(metric, ""))
        table[f"{name} mean"] = wide[("mean", metric)]
        table[f"{name} std"] = wide[("std", metric)]
    table["seeds"] = per_run.groupby(keys, sort=False)["run_id"].nunique().reindex(table.index)
    table = table.reset_index()
    natural = rows[rows["metric"] == "natural_accuracy"]
    if len(natural):  # how many test images NA and AA count (attacks on explanations: the `scored` count)
        images = natural.groupby(group, sort=False)["n"].max().rename("NA n").reset_index()
        table = table.merge(images, on=group, how="left")
    return table


def paper_table(report: SweepReport) -> pd.DataFrame:
    """'mean ± std' strings for Markdown and LaTeX: NA and AA, every measure in its headline (strict) accounting,
    the reference accounting of the first two, and the scored, unqualified and unmoved counts (`_shown_headings`);
    report.csv holds every column."""
    table = report.table
    keys = GROUP_KEYS + shown_keys(report) + ["attack"]
    out = table[keys].copy()
    for name in _shown_headings(table):
        digits = 0 if name in FIXED_HEADINGS.values() else 2 if name.endswith(("(%)", "(px)")) else 4
        pairs = zip(table[f"{name} mean"], table[f"{name} std"], strict=True)
        out[name] = [_mean_std(mean, std, digits) for mean, std in pairs]
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


def _mean_std(mean: float, std: float, digits: int) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def problems_text(report: SweepReport) -> str:
    lines = [f"- {run.state}: {run.folder} ({run.reason})" for run in report.problems]
    return "\n".join(lines)


def write_report(report: SweepReport, folder: Path) -> list[Path]:
    """report.csv (means, stds, seeds), report.md and report.tex (mean ± std, failed and missing runs listed), and
    report.png when a numeric key was swept. Returns the files written."""
    from attrobust.atomic import write_text_atomic

    written = [folder / "report.csv", folder / "report.md", folder / "report.tex"]
    problems = problems_text(report)
    table = paper_table(report) if len(report.table) else pd.DataFrame()
    write_text_atomic(written[0], report.table.to_csv(index=False, float_format="%.6g"))
    markdown = table.to_markdown(index=False, disable_numparse=True) if len(table) else "(no finished runs)"
    runs = f"{len(report.runs)} run(s): {sum(r.state == 'done' for r in report.runs)} done"
    listed = f"\nNot in the table:\n{problems}\n" if problems else ""
    write_text_atomic(written[1], f"{markdown}\n\n{runs}\n{listed}")
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


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """`text` with every character LaTeX treats specially escaped (and ± as math), for tables pasted into papers."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(table: pd.DataFrame) -> str:
    """A tabular of `table`'s strings, every cell and heading escaped."""
    escaped = table.astype(str).map(latex_escape)
    escaped.columns = [latex_escape(str(column)) for column in table.columns]
    return escaped.to_latex(index=False, escape=False)


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
