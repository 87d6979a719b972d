"""What a command line says, read before Hydra composes anything: earlier spellings of overrides (read as today's,
with a one-line note), and the overrides that cannot work (an unknown group option, a dataset key a checkpoint's
command cannot change), refused with one line naming the valid choices."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from attrobust.config import GROUPS, group_options
from attrobust.errors import AttrobustError, choices


MULTIPLE_CHOICE = ("logger",)  # the groups whose options combine: logger=[csv,mlflow] tracks to both


def check_group_choices(overrides: Sequence[str], user_config_dir: str | None) -> None:
    """Unknown group options (dataset=foo) as one line with the valid choices, before Hydra composes."""
    extra = (Path(user_config_dir),) if user_config_dir else ()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        group = override.key_or_group
        if group in GROUPS and override.is_delete():
            raise AttrobustError(f"~{group} removes the {group} group, which the command needs; choose another "
                                 f"with {group}=NAME: {choices(group_options(group, extra))}")
        if group not in (*GROUPS, "experiment") or override.is_delete():
            continue
        if override.is_sweep_override() and group in MULTIPLE_CHOICE:
            listed = ",".join(override.sweep_string_iterator())
            raise AttrobustError(f"{group}={listed} sweeps the {group}s: its jobs would be the same runs, differing "
                                 f"only in where they are logged, and report would count each twice; log each run "
                                 f"to several at once with {group}=[{listed}]")
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        elif isinstance(override.value(), list):  # several options of one group at once: logger=[csv,mlflow]
            if group not in MULTIPLE_CHOICE:
                raise AttrobustError(f"{group}={override.get_value_element_as_str()} chooses several {group}s; "
                                     f"{group} takes one of: {choices(group_options(group, extra))}")
            values = [str(value) for value in override.value()]
        else:
            values = [override.get_value_element_as_str()]
        valid = group_options(group, extra)
        for value in values:
            if value not in valid:
                kind = "preset (+experiment=NAME)" if group == "experiment" else group
                raise AttrobustError(f"unknown {kind} '{value}'; choose one of: {choices(valid)}")


VALUE_OPTIONS = ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name", "-c", "--cfg", "-p",
                 "--package", "-i", "--info")  # Hydra options whose next argument is a value, not an override
OLD_ATTACK = re.compile(r"([+~]*)attack(\.[^=]+)?(=.*)?", re.DOTALL)


CHOSEN_BY_KEY = re.compile(r"([+~]*)attribution_attack=([\w,]+)")  # a choice spelled as a key: a group option


def attack_spelling(args: Sequence[str], old: bool) -> list[str]:
    """`evaluate` and `attack` both name the attack on explanations `attribution_attack`, chosen with
    `attack@attribution_attack=NAME` (or `attribution_attack=NAME`). With `old` (the attack command), the earlier
    `attack=NAME` / `attack.KEY=...` are read as `attack@attribution_attack=NAME` / `attribution_attack.KEY=...`,
    with a one-line note."""
    out, renamed = [], []
    for index, arg in enumerate(args):
        if index and args[index - 1] in VALUE_OPTIONS:
            out.append(arg)
            continue
        chosen = CHOSEN_BY_KEY.fullmatch(arg)
        if chosen is not None:
            out.append(f"{chosen.group(1)}attack@attribution_attack={chosen.group(2)}")
            continue
        match = OLD_ATTACK.fullmatch(arg) if old else None
        if match is None:
            out.append(arg)
            continue
        prefix, key, value = match.group(1), match.group(2), match.group(3) or ""
        out.append(f"{prefix}attribution_attack{key}{value}" if key else f"{prefix}attack@attribution_attack{value}")
        renamed.append((arg.split("=", 1)[0], out[-1].split("=", 1)[0]))
    if renamed:
        print(f"note: in attrobust attack the attack on explanations is attribution_attack, as in evaluate: read "
              f"{', '.join(f'{old} as {new}' for old, new in renamed)}", file=sys.stderr)
    return out


OLD_THREAT = re.compile(r"([+~]*)dataset\.((?:eps|pgd|attribution_attack|attribution_training)(?:\.[^=]*)?(?:=.*)?)",
                        re.DOTALL)


def threat_spelling(args: Sequence[str]) -> list[str]:
    """The threat model has its own group (`threat`, attrobust/attacks/threat.py): the earlier `dataset.eps=...`,
    `dataset.pgd.*`, `dataset.attribution_attack.*` and `dataset.attribution_training.*` are read as `threat.*`, with
    a one-line note."""
    out, renamed = [], []
    for index, arg in enumerate(args):
        match = None if index and args[index - 1] in VALUE_OPTIONS else OLD_THREAT.fullmatch(arg)
        if match is None:
            out.append(arg)
            continue
        out.append(f"{match.group(1)}threat.{match.group(2)}")
        renamed.append((arg.split("=", 1)[0], out[-1].split("=", 1)[0]))
    if renamed:
        print(f"note: the threat model has its own group: read {', '.join(f'{a} as {b}' for a, b in renamed)}",
              file=sys.stderr)
    return out


def check_dataset_keys(config_name: str, overrides: Sequence[str]) -> None:
    """evaluate, attack, explain: without dataset=NAME the dataset (and its settings) come from the checkpoint, so a
    dataset.KEY override has nothing to change; say how to change it, before Hydra's 'unknown key' or a '+' that
    breaks the interpolations reading the dataset."""
    if config_name == "train":
        return
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    if any(override.key_or_group == "dataset" for override in parsed):
        return
    for override in parsed:
        key = override.key_or_group
        if key.startswith("dataset."):
            raise AttrobustError(f"{key}: without dataset=NAME the dataset and its settings come from the checkpoint; "
                                 f"to change {key}, name the dataset too (dataset=NAME {key}=..., NAME as the "
                                 f"checkpoint's, e.g. dataset=mnist_mini)")
        if key == "threat" or key.startswith("threat."):
            raise AttrobustError(f"{key}: without dataset=NAME the threat model comes from the checkpoint; change the "
                                 f"attacks themselves (attack.eps=..., attribution_attack.eps=..., "
                                 f"attribution_attack.steps=...), or name the dataset too (dataset=NAME {key}=...)")


def swept_keys(items: Sequence[str]) -> list[str]:
    """The keys a multirun sweeps (`reg.weight` of `reg.weight=0.1,1`); the jobs' folders are named by their values."""
    parsed = OverridesParser.create().parse_overrides([str(item) for item in items])
    return [override.key_or_group for override in parsed if override.is_sweep_override()]
