"""What `attrobust list GROUP` shows and what shell completion proposes, generated from the configs and registries.

A config group (dataset, model, reg, attack, optim, explainer, +experiment) lists each option's settings as its YAML
sets them, with the comment beside each; a measure list (eval.metrics, eval.stability, eval.corruptions, ...) lists
each registered measure's dataclass fields with their defaults and the comment beside each in its source.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attrobust.config import GROUPS, config_dir, group_options

SETTING = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w@]*):\s*(?P<value>[^#]*?)\s*(#\s?(?P<help>.*))?$")
FIELD = re.compile(r"^\s+(?P<key>[a-z_]\w*):[^=#]*=\s*(?P<value>[^#]*?)\s*(#\s?(?P<help>.*))?$")


def option_settings(path: Path) -> list[tuple[str, str, str]]:
    """The settings of a group option: those of the files of its group it includes (`defaults: [- _shared]`), then
    its own, a later value of a key replacing an earlier one."""
    included = re.findall(r"^\s*-\s*(_\w+)\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    settings: dict[str, tuple[str, str, str]] = {}
    for source in [path.parent / f"{name}.yaml" for name in included] + [path]:
        if source.is_file():
            for key, value, help_ in yaml_settings(source):
                settings[key] = (key, value, help_ or settings.get(key, ("", "", ""))[2])
    return list(settings.values())


def yaml_settings(path: Path) -> Iterator[tuple[str, str, str]]:
    """(dotted key, value as written, its comment) of each setting in a config file; comment lines that follow a
    setting continue its help; `defaults:` lists and Hydra directives are skipped."""
    parents: list[tuple[int, str]] = []
    rows: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if rows and line.startswith(" "):   # an indented comment continues the last setting's help
                rows[-1][2] = f"{rows[-1][2]} {stripped.lstrip('#').strip()}".strip()
            continue
        match = SETTING.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        parents = [(i, k) for i, k in parents if i < indent]
        key = ".".join([k for _, k in parents] + [match["key"]])
        if match["value"] == "":
            parents.append((indent, match["key"]))
        if key.split(".")[0] not in ("defaults", "hydra"):
            rows.append([key, match["value"], match["help"] or ""])
    return (tuple(row) for row in rows)


def registry_settings(cls: type) -> Iterator[tuple[str, str, str]]:
    """(field, default, the comment beside it in the source) of a registered dataclass and its bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            match = FIELD.match(line)
            if match and match["help"]:
                comments[match["key"]] = match["help"]
    for field in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
        if not field.init:
            continue
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else "???")
        yield field.name, _shown(default), comments.get(field.name, "")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def measure_groups() -> dict[str, Any]:
    """`eval.<list>` -> the registry its names come from (eval.metrics and each evaluation part's list)."""
    from attrobust.metrics import METRICS
    from attrobust.parts import part_settings

    groups: dict[str, Any] = {"metrics": METRICS}
    groups.update({setting: part.measures for setting, part in part_settings().items()})
    return groups


def choices() -> list[str]:
    """The groups `attrobust list GROUP` takes."""
    return [*GROUPS, "experiment", *sorted(measure_groups())]


def group_rows(group: str) -> list[tuple[str, str, str, str]]:
    """(option, setting, default, help) of every option of `group` (see `choices`)."""
    if group in (*GROUPS, "experiment"):
        rows = []
        for name in group_options(group):
            settings = [row for row in option_settings(config_dir() / group / f"{name}.yaml") if row[0] != "name"]
            rows += [(name, *row) for row in settings or [("", "", "(no settings)")]]
        return rows
    registry = measure_groups()[group]
    rows = []
    for name in registry.names():
        settings = list(registry_settings(registry.get(name))) or [("", "", "(no settings)")]
        rows += [(name, key, value, help_) for key, value, help_ in settings]
    return rows


def complete_override(incomplete: str) -> list[str]:
    """Shell completion of a Hydra override: `group=` for a bare word, the group's options after `group=`."""
    groups = {**{group: group for group in GROUPS}, "+experiment": "experiment"}
    if "=" not in incomplete:
        return [f"{key}=" for key in groups if key.startswith(incomplete)]
    key, prefix = incomplete.split("=", 1)
    if key not in groups:
        return []
    return [f"{key}={name}" for name in group_options(groups[key]) if name.startswith(prefix)]


def print_group(console: Console, group: str) -> None:
    """`attrobust list GROUP`: one row per setting of each option."""
    table = Table(title=f"{group}: each option's settings (override as {override_form(group)})")
    for column in ("name", "setting", "default", "help"):
        table.add_column(column)
    for row in group_rows(group):
        table.add_row(*(escape(value) for value in row))
    console.print(table)


def override_form(group: str) -> str:
    if group == "experiment":
        return "+experiment=NAME"
    if group in GROUPS:
        return f"{group}=NAME {group}.SETTING=VALUE"
    return f"eval.{group}=[NAME,{{name:NAME,SETTING:VALUE}}]"


def print_components(console: Console) -> None:
    """`attrobust list`: every option of every group with its description, then every measure."""
    table = component_table(f"attrobust components (configs in {config_dir()}; attrobust list GROUP for settings)")
    for group in (*GROUPS, "experiment"):
        for name in group_options(group):
            table.add_row(group if group != "experiment" else "+experiment", name,
                          escape(description(config_dir() / group / f"{name}.yaml")))
    console.print(table)  # before the measures, which need torch (a second or more to import)
    keys: dict[int, tuple[list[str], Any]] = {}
    for setting, registry in measure_groups().items():  # the measure lists the evaluation parts own
        keys.setdefault(id(registry), ([], registry))[0].append(f"eval.{setting}")
    measures = component_table("measures (no YAML: their docstrings describe them)")
    for listed, registry in keys.values():
        for name in registry.names():
            doc = sys.modules[registry.get(name).__module__].__doc__ or ""
            measures.add_row(", ".join(listed), name, escape(first_paragraph(doc)))
    console.print(measures)


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line (its first line alone may stop mid-sentence)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def component_table(title: str) -> Table:
    table = Table(title=title)
    for column in ("group", "name", "description"):
        table.add_column(column)
    return table


def description(path: Path) -> str:
    """The leading comment of a config (Hydra directives skipped), whole: it may run over several lines."""
    parts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @"):
            continue
        if not line.startswith("#"):
            break
        parts.append(line.lstrip("#").strip())
    return " ".join(part for part in parts if part)
