"""The `attrobust` command line: Typer subcommands that hand their arguments to Hydra (`attrobust.launch`).

This module imports only Typer and Rich, so `attrobust --help` answers at once; a command imports Hydra, torch and
the rest when it runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from attrobust.errors import AttrobustError, describe_os_error
from attrobust.terminal import console

HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["--help"]}
OVERRIDES_HELP = ("Hydra overrides, e.g. dataset=mnist reg=pgd train.epochs=5; with -m, comma lists sweep "
                  "(reg=natural,pgd). Hydra's flags pass through: --cfg job, -cd DIR, --hydra-help.")
Overrides = Annotated[list[str] | None, typer.Argument(help=OVERRIDES_HELP, show_default=False,
                                                      autocompletion=lambda incomplete: _completions(incomplete))]
Multirun = Annotated[bool, typer.Option("--multirun", "-m", help="Run a sweep (Hydra multirun).")]

app = typer.Typer(
    help="attrobust: attributional-robustness experiments (Robust Attribution Regularization and beyond).\n\n"
         "Each command composes its config from conf/ with Hydra: pass key=value overrides, -m to sweep. "
         "Runs land in outputs/<command>/<time>_<dataset>_<reg>/ with a .hydra/ config snapshot.",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: eval.metrics=[name,...] stays as written
)
_console = console()


@app.command(context_settings=HYDRA_ARGS)
def train(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """Train a model (dataset=, model=, reg=, optim=, train.*) and evaluate it at the end (attack=, eval.*).

    Example: attrobust train dataset=mnist_mini reg=pgd train.epochs=5
    """
    _run("train", overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def evaluate(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """The paper's columns for a trained model, checkpoint=RUN_DIR (or a .pt): NA, AA, IN, CO.

    AA uses attack= (pgd), IN and CO attack@attribution_attack= (topk); attributions=false skips the latter.
    Results go to RUN_DIR/evaluate/<time>/.
    Example: attrobust evaluate checkpoint=outputs/train/<run> eval.num_examples=100
    """
    _run("evaluate", overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def attack(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """Attack a trained model's attributions beside random controls: checkpoint=RUN_DIR attack=topk|mass_center|target
    (or random_sign|random_noise), explainer=ig|gradient|...; eval.baselines are the controls.

    Writes per-image measures, the table, examples.pt and figure.png to RUN_DIR/attack/<time>_<attack>_<explainer>/.
    Example: attrobust attack checkpoint=outputs/train/<run> attack=random_sign eval.num_examples=100
    """
    _run("attack", overrides or [], multirun)


@app.command(context_settings=HYDRA_ARGS)
def explain(overrides: Overrides = None, multirun: Multirun = False) -> None:
    """The maps of an explainer (explainer=ig|gradient|...) for chosen test images of a trained model: maps.pt and
    maps.png in RUN_DIR/explain/<time>_<explainer>/. Choose images with eval.indices=[..], eval.classes=[..],
    eval.sample=N or eval.num_examples=N (default: the first 8).

    Example: attrobust explain checkpoint=outputs/train/<run> explainer=smoothgrad eval.indices=[0,7,42]
    """
    _run("explain", overrides or [], multirun)


@app.command("list")
def list_components(group: Annotated[str | None, typer.Argument(
        help="Show this group's options with each setting, its default and help: dataset, model, reg, attack, optim, "
             "explainer, experiment, or a measure list (metrics, stability, faithfulness, randomisation, "
             "corruptions).", show_default=False)] = None) -> None:
    """List the datasets, models, regularisers, attacks, optimisers, explainers (group=name), presets
    (+experiment=name) and measures (eval.metrics=[name,...] and each evaluation part's list: eval.stability=[...],
    eval.faithfulness=[...], ...); with GROUP, every setting of that group's options with its default and help."""
    from attrobust import listing

    if group is None:
        listing.print_components(_console)
        return
    if group not in listing.choices():
        _fail(f"list: unknown group '{group}'; choose one of: {', '.join(listing.choices())}")
    listing.print_group(_console, group)


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="A run or sweep dir (searched recursively).")]) -> None:
    """The paper's table over every run under DIRECTORY: mean ± the 95 % interval (over seeds, or over images for one
    seed), one line per dataset x model x reg x swept value; report.csv, report.md, report.tex (and report.png for a
    numeric sweep) in DIRECTORY. Failed and missing runs are listed."""
    if not directory.is_dir():
        _fail(f"no such directory: {directory}")
    from attrobust.reporting.sweep import print_report

    try:
        print_report(directory, _console)
    except AttrobustError as error:
        _fail(str(error))
    except OSError as error:  # e.g. a read-only sweep folder
        _fail(describe_os_error(error))


@app.command()
def compare(folders: Annotated[list[str], typer.Argument(help="Two or more evaluation folders (a method's seeds: "
                                                          "its folders joined by commas, A0,A1,A2).")],
            out: Annotated[Path, typer.Option(help="Where compare.csv and compare.md are written.")] = Path("compare"),
            seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0) -> None:
    """Paired comparison of models evaluated on the same images: for every pair and measure, the difference with
    its 95 % interval, a paired test (McNemar for accuracy, Wilcoxon for measures), Holm's correction over all of
    them, which differences are resolved, and how many images would resolve the others. Evaluations that did not
    measure alike (images, attacks, explainer, protocol) are refused. A method given as several seeds pairs with
    another seed by seed (mean over seeds and images, an interval over both)."""
    if len(folders) < 2:
        _fail("compare needs two or more evaluation folders (attrobust compare A B ...)")
    if seed < 0:
        _fail(f"--seed {seed}: the bootstrap's seed must be >= 0")
    from attrobust.atomic import write_text_atomic
    from attrobust.reporting.compare import compare as paired_comparison
    from attrobust.reporting.compare import compare_markdown, compare_shown, read_method
    from attrobust.reporting.intervals import Bootstrap

    try:
        table = paired_comparison([read_method(folder) for folder in folders], Bootstrap(seed=seed))
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "compare.csv", table.to_csv(index=False, float_format="%.6g"))
        write_text_atomic(out / "compare.md", compare_markdown(table))
    except AttrobustError as error:
        _fail(str(error))
    except OSError as error:
        _fail(describe_os_error(error))
    shown = compare_shown(table)
    rich = Table(title="paired differences (B - A); resolved: Holm-corrected p < 0.05 (seeds: and the interval "
                       "excludes 0)")
    for column in shown.columns:
        rich.add_column(str(column))
    for record in shown.itertuples(index=False):
        rich.add_row(*(escape(str(value)) for value in record))
    _console.print(rich)
    _console.print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'}")


@app.command()
def leaderboard(directory: Annotated[Path, typer.Argument(help="Where to look for entry.json files.")],
                out: Annotated[Path | None, typer.Option(help="Where the page is written (default DIR/leaderboard).")]
                = None,
                by: Annotated[str, typer.Option(help="A line per model, or per method with its seeds pooled (mean "
                                                     "and Student's t interval over the seeds).")] = "model") -> None:
    """Rank the evaluated models under DIRECTORY (their entry.json, written by evaluate) on one static page:
    index.html (sortable, with each model's attribution maps), leaderboard.md and leaderboard.tex. Models are ranked
    together only under one protocol fingerprint; each other fingerprint gets a board of its own."""
    if not directory.is_dir():
        _fail(f"no such directory: {directory}")
    from attrobust.reporting.leaderboard import find_entries, older_fingerprints, render

    try:
        entries = find_entries(directory)
        note = older_fingerprints(entries)
        if note:
            typer.echo(f"note: {note}", err=True)
        written = render(entries, out if out is not None else directory / "leaderboard", by)
    except AttrobustError as error:
        _fail(str(error))
    except OSError as error:
        _fail(describe_os_error(error))
    _console.print(f"wrote {', '.join(str(path) for path in written)}")


@app.command()
def merge(directory: Annotated[Path, typer.Argument(help="A folder holding the shards' run folders.")]) -> None:
    """Merge the shards of a sharded evaluation (eval.shard=i eval.num_shards=n) under DIRECTORY into
    DIRECTORY/merged: their per-image rows in the unsharded order, and the result rows and tables of the unsharded
    run. Every shard must have finished; a missing one is named with the command that runs it."""
    if not directory.is_dir():
        _fail(f"no such directory: {directory}")
    from attrobust.reporting.merge import merge_directory
    from attrobust.reporting.tables import rich_table

    try:
        merged = merge_directory(directory)
    except AttrobustError as error:
        _fail(str(error))
    except OSError as error:
        _fail(describe_os_error(error))
    if not merged:
        _fail(f"no finished shards under {directory} (each shard writes evaluation.json when it ends); run the "
              f"shards with eval.shard=i eval.num_shards=n")
    for folder, table in merged:
        _console.print(rich_table(table, str(folder)))
        _console.print(f"wrote {folder}")


def _completions(incomplete: str) -> list[str]:
    from attrobust.listing import complete_override

    return complete_override(incomplete)


def _run(command: str, args: list[str], multirun: bool) -> None:
    from attrobust.launch import CommandFailed, run_command  # Hydra, torch and pandas load here, not for --help

    try:
        run_command(command, args, multirun)
    except CommandFailed as failed:
        for message in failed.messages:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def main() -> None:
    """The `attrobust` command: a usage mistake (no command, an unknown one, a missing or extra argument) is one line
    and exit status 2, like every other mistake."""
    usage_errors, aborts = _click_exceptions("UsageError"), _click_exceptions("Abort")
    try:
        code = app(standalone_mode=False, prog_name="attrobust")  # also as python -m attrobust
    except usage_errors as error:
        if type(error).__name__.startswith("NoArgsIsHelp"):  # bare `attrobust`, after the help
            message = f"no command given; choose one of: {', '.join(_command_names())}"
        else:
            context = getattr(error, "ctx", None)
            command = context.info_name if context is not None and context.parent is not None else ""
            message = f"{error.format_message().strip()} (see: attrobust {command + ' ' if command else ''}--help)"
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(2) from None
    except aborts:
        typer.echo("error: interrupted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """Click's exception class `name`, from the click that Typer vendors (typer._click) and from click itself."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _command_names() -> list[str]:
    return [command.name or command.callback.__name__ for command in app.registered_commands
            if command.callback is not None]


if __name__ == "__main__":
    main()
