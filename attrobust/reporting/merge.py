"""Merging the shards of an evaluation: their per-image rows put back in the unsharded order (`merge_per_image`),
checked to add up to one evaluation (every image once, the same units of work), and written with the result rows
and tables of the unsharded run (`merge_shards`); `merge_directory` merges every complete group under a folder
(`attrobust merge`, `attrobust report`). A merge never writes through a symbolic link inside its folder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from attrobust.atomic import write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.parts import part_classes
from attrobust.reporting.entry import ENTRY_FILE, write_merged_entry
from attrobust.reporting.evaluation import (EVALUATION_FILE, MERGED_FOLDER, EvaluationRecord, PerImage,
                                            read_evaluation, write_evaluation)
from attrobust.rundir import refuse_links

log = logging.getLogger("attrobust")


def merge_per_image(records: list[EvaluationRecord], parts: list[PerImage]) -> PerImage:
    """The shards' rows in the unsharded order: each part's lines in their order, images in evaluation order."""
    position = {index: at for at, index in enumerate(records[0].images)}
    merged = {}
    for part in part_classes():
        name = part.registry_name
        present = [frames[name] for frames in parts if name in frames]
        if not present:
            continue
        whole = pd.concat(present, ignore_index=True)
        keys = {"_position": whole["index"].map(position)}
        if part.line_column is not None:
            rank = {line: at for at, (line, _) in enumerate(records[0].parts.get(name, []))}
            keys = {"_line": whole[part.line_column].map(rank), **keys}
        whole = whole.assign(**keys)
        merged[name] = whole.sort_values(list(keys), kind="stable").drop(columns=list(keys)).reset_index(drop=True)
    return merged


def is_finished_shard(folder: Path) -> bool:
    """A shard of a sharded evaluation that wrote all its rows (whose table is that of the merge)."""
    path = folder / EVALUATION_FILE
    return path.is_file() and EvaluationRecord.read(path).is_shard


def check_coverage(record: EvaluationRecord, per_image: PerImage) -> None:
    """The merged rows hold every image once: a part with a row per selected image every one of them, and every
    other part (each of its lines) the same scored images. Shards that cut the work differently fail here."""
    problems = []
    scored: list[tuple[str, pd.Series]] = []
    for part in part_classes():
        frame = per_image.get(part.registry_name)
        if frame is None:
            continue
        if part.every_image:
            if frame["index"].tolist() != record.images:
                problems.append(f"{part.registry_name} rows do not cover each selected image once")
        elif part.line_column is not None:
            if frame.duplicated([part.line_column, "index"]).any():
                problems.append(f"a line of {part.registry_name} scores an image twice")
            scored += [(f"{part.registry_name} {line}", rows["index"])
                       for line, rows in frame.groupby(part.line_column)]
        else:
            scored.append((part.registry_name, frame["index"]))
    sets = {name: set(indices) for name, indices in scored}
    if any(len(set(indices)) != len(indices) for _, indices in scored):
        problems.append("an image is scored twice")
    if len({frozenset(found) for found in sets.values()}) > 1:
        problems.append(f"the parts score different images ({', '.join(f'{n}: {len(v)}' for n, v in sets.items())})")
    if problems:
        raise AttrobustError(f"these shards do not add up to one evaluation: {'; '.join(problems)}; run every shard "
                             f"with the same settings on the same kind of device (and eval.attribution_batch_size)")


def check_same_units(records: list[EvaluationRecord], folders: list[Path]) -> None:
    """Shards merge only when they cut the work into the same units (device type, attack chunk sizes); a shard whose
    chunks were split after running out of device memory drew other random numbers: warned, not refused."""
    first = records[0]
    for record, folder in zip(records[1:], folders[1:], strict=True):
        if record.images != first.images or record.device != first.device or \
                {k: v[0] for k, v in record.chunks.items()} != {k: v[0] for k, v in first.chunks.items()}:
            raise AttrobustError(f"{folder} cut the evaluation into other units than {folders[0]} (images, device "
                                 f"{record.device} vs {first.device}, chunks {record.chunks} vs {first.chunks}); run "
                                 f"every shard with the same eval.attribution_batch_size on the same kind of device")
    for record, folder in zip(records, folders, strict=True):
        split = [name for name, (chunk, piece) in record.chunks.items() if piece != chunk]
        if split:
            log.warning("%s split the chunks of %s after running out of device memory: their random draws differ "
                        "from an unsharded run's (the rows are valid, not bitwise those of one run)", folder,
                        ", ".join(split))


def evaluation_records(directory: Path, skip_unreadable: bool = False) -> list[tuple[Path, EvaluationRecord]]:
    """Every finished evaluation under `directory` (its `evaluation.json`); `skip_unreadable`: an unreadable one is
    warned about instead of stopping."""
    found = []
    for path in sorted(directory.rglob(EVALUATION_FILE)):
        try:
            found.append((path, EvaluationRecord.read(path)))
        except AttrobustError as error:
            if not skip_unreadable:
                raise
            log.warning("%s", error)
    return found


def shard_groups(records: list[tuple[Path, EvaluationRecord]]) -> dict[tuple[str, int], dict[int, Path]]:
    """The finished shards among `records` by evaluation (fingerprint, number of shards) and shard number; of two
    finished runs of the same shard, the newer."""
    groups: dict[tuple[str, int], dict[int, Path]] = {}
    for path, record in records:
        if not record.is_shard:
            continue
        assert record.shard is not None
        shards = groups.setdefault((record.fingerprint, record.num_shards), {})
        earlier = shards.get(record.shard)
        if earlier is None or path.stat().st_mtime > (earlier / EVALUATION_FILE).stat().st_mtime:
            shards[record.shard] = path.parent
    return groups


def merged_folder(directory: Path, fingerprint: str) -> Path:
    """`<directory>/merged`, unless it holds another evaluation's merge: then `<directory>/merged-<fingerprint>`."""
    for folder in (directory / MERGED_FOLDER, directory / f"{MERGED_FOLDER}-{fingerprint[:12]}"):
        record = folder / EVALUATION_FILE
        if not record.is_file():
            return folder
        try:
            if EvaluationRecord.read(record).fingerprint == fingerprint:
                return folder
        except AttrobustError:
            continue
    raise AttrobustError(f"{directory / MERGED_FOLDER} and its sibling for this evaluation hold other merges; merge "
                         f"into another folder")


def merge_shards(folders: list[Path], out: Path, copy_overrides: bool = False) -> pd.DataFrame:
    """Merge the finished shards in `folders` (one evaluation, every shard once) into `out`: the per-image files, the
    result rows and tables, `evaluation.json`, the leaderboard entry (from the shards' description of it), and with
    `copy_overrides` the first shard's Hydra overrides, for a folder of its own. Returns the summary table."""
    read = [read_evaluation(folder) for folder in folders]
    records = [record for record, _ in read]
    first = records[0]
    if {(record.fingerprint, record.num_shards) for record in records} != {(first.fingerprint, first.num_shards)}:
        raise AttrobustError(f"{', '.join(map(str, folders))} hold shards of different evaluations; merge the shards "
                             f"of one evaluation")
    present = sorted(record.shard for record in records if record.shard is not None)
    missing = sorted(set(range(first.num_shards)) - set(present))
    if missing or len(present) != first.num_shards:
        raise AttrobustError(f"shard(s) {missing or present} of the {first.num_shards} of this evaluation are missing "
                             f"or listed twice (a shard without {EVALUATION_FILE} did not finish); run "
                             f"{' and '.join(rerun_command(first.command, shard) for shard in missing) or 'each once'}"
                             f" (with hydra.run.dir=<its folder> a killed shard resumes its chunks)")
    check_same_units(records, folders)
    per_image = merge_per_image(records, [part for _, part in read])
    merged = EvaluationRecord(**{**asdict(first), "shard": None, "command": [],
                                 "eval": {**first.eval, "shard": None},
                                 "merged_from": [str(folder) for folder in folders]})
    check_coverage(merged, per_image)
    refuse_links(out, out.parent)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENTRY_FILE).unlink(missing_ok=True)  # an earlier merge's: it would rank what this merge replaces
    if copy_overrides:
        _copy_overrides(folders[0], out)
    table = write_evaluation(out, merged, per_image)
    assert table is not None
    write_merged_entry(folders[0], out, pd.read_csv(out / "results.csv"), merged.parts)
    log.info("merged %d shards of %d images into %s", first.num_shards, len(first.images), out)
    return table


def rerun_command(command: list[str], shard: int) -> str:
    """Another shard's command (from `provenance.json`), for shard `shard`, without its run folder."""
    if not command:
        return f"the evaluation with eval.shard={shard}"
    kept = [f"eval.shard={shard}" if item.lstrip("+~").startswith("eval.shard=") else item
            for item in command if not item.lstrip("+~").startswith("hydra.run.dir=")]
    return " ".join(kept)


def _copy_overrides(shard: Path, out: Path) -> None:
    """The first shard's Hydra overrides without the shard keys, so that `report` reads the merge as a run of its
    sweep."""
    source = shard / ".hydra" / "overrides.yaml"
    if not source.is_file():
        return
    try:
        listed = yaml.safe_load(source.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as error:
        raise AttrobustError(f"unreadable {source}: {str(error).splitlines()[0]}") from error
    kept = [str(item) for item in listed if str(item).split("=")[0].lstrip("+~") not in ("eval.shard",
                                                                                        "eval.num_shards")]
    write_text_atomic(out / ".hydra" / "overrides.yaml", yaml.safe_dump(kept))


def merge_directory(directory: Path, only_unmerged: bool = False) -> list[tuple[Path, pd.DataFrame]]:
    """Merge every complete group of shards under `directory` into `<directory>/merged` (or, when that holds another
    evaluation's merge, `<directory>/merged-<fingerprint>`); with `only_unmerged` (`report`), groups already held
    whole are skipped and an incomplete or unreadable group is only warned about. Returns each merged folder and its
    summary table."""
    records = evaluation_records(directory, skip_unreadable=only_unmerged)
    groups = shard_groups(records)
    if only_unmerged:  # evaluations a merge (or an unsharded run) already holds whole
        done = {record.fingerprint for _, record in records if not record.is_shard}
        groups = {key: shards for key, shards in groups.items() if key[0] not in done}
    merged = []
    for (fingerprint, _), shards in groups.items():
        try:
            out = merged_folder(directory, fingerprint)
            table = merge_shards([shards[i] for i in sorted(shards)], out, copy_overrides=True)
        except AttrobustError as error:
            if not only_unmerged:
                raise
            log.warning("not merged: %s", error)
            continue
        merged.append((out, table))
    return merged
