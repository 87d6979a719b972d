"""An evaluation's per-image rows on disk, the result rows made from them, and the merge of a sharded evaluation.

Every `evaluate` and `attack` run writes its per-image rows (`accuracy.csv`: one row per test image; `measures.csv`:
one row per scored image and attack on explanations; `stability.csv`: one row per scored image) and then, last,
`evaluation.json`: what was evaluated (a fingerprint of the config without the shard keys), which shard, the images
in their order, and the identity of each part's result rows. The result rows (`results.csv`, the tables) are always
made from the per-image rows by `evaluation_rows`, so the shards of an evaluation, merged (`merge_shards`: their rows
put back in the unsharded order), give exactly the table of the unsharded run. A shard without `evaluation.json` did
not finish: run its command again (its `provenance.json` has it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from attrobust.atomic import read_csv_exact, write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.metrics import protocol_metrics
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity, accuracy_rows, attribution_rows, image_mean_rows
from attrobust.reporting.tables import write_results
from attrobust.faithfulness import build_faithfulness
from attrobust.stability import build_stability

log = logging.getLogger("attrobust")
EVALUATION_FILE = "evaluation.json"
PER_IMAGE_FILES = {"accuracy": "accuracy.csv", "measures": "measures.csv", "stability": "stability.csv",
                   "faithfulness": "faithfulness.csv"}
MERGED_FOLDER = "merged"


@dataclass(frozen=True)
class EvaluationRecord:
    """`evaluation.json`: what one run (or shard) evaluated and the identity of each part's result rows."""

    fingerprint: str                    # the config without eval.shard / eval.num_shards, and the checkpoint
    shard: int | None                   # None: the whole evaluation (or a merge of its shards)
    num_shards: int
    images: list[int]                   # the selected test images (test-split indices), in evaluation order
    eval: dict[str, Any]                # the `eval` settings (which metrics, the protocol)
    accuracy: dict[str, Any] | None     # RunIdentity of the NA / AA rows (None: not measured)
    attacks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # attack name, RunIdentity of its rows
    stability: dict[str, Any] | None = None  # RunIdentity of the stability rows
    faithfulness: dict[str, Any] | None = None  # RunIdentity of the faithfulness rows
    command: list[str] = field(default_factory=list)  # the command that runs this shard again
    merged_from: list[str] = field(default_factory=list)

    @property
    def is_shard(self) -> bool:
        return self.shard is not None and self.num_shards > 1

    @classmethod
    def read(cls, path: Path) -> EvaluationRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["attacks"] = [(name, identity) for name, identity in data.get("attacks", [])]
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise AttrobustError(f"unreadable {path}: {error}; run that evaluation again") from error


@dataclass
class PerImage:
    """The per-image rows of one evaluation (or shard); a part not measured is None."""

    accuracy: pd.DataFrame | None = None   # index, label, correct[, robust]
    measures: pd.DataFrame | None = None   # engine.attribution's columns, then `attack`
    stability: pd.DataFrame | None = None  # index, label, one column per stability metric
    faithfulness: pd.DataFrame | None = None  # index, label, one column per faithfulness metric


def write_evaluation(folder: Path, record: EvaluationRecord, per_image: PerImage) -> pd.DataFrame | None:
    """The per-image files, each atomically; of a whole evaluation its result rows and tables (`write_results`);
    then `evaluation.json`, which marks them complete. Returns the summary table (None for a shard)."""
    (folder / EVALUATION_FILE).unlink(missing_ok=True)  # an earlier run's: these files are not complete yet
    for part, name in PER_IMAGE_FILES.items():
        frame = getattr(per_image, part)
        if frame is not None:
            write_text_atomic(folder / name, frame.to_csv(index=False))
        else:
            (folder / name).unlink(missing_ok=True)  # an earlier run's, of another evaluation
    table = None if record.is_shard else write_results(evaluation_rows(record, per_image), folder)
    write_text_atomic(folder / EVALUATION_FILE, json.dumps(asdict(record), indent=1) + "\n")
    return table


def read_evaluation(folder: Path) -> tuple[EvaluationRecord, PerImage]:
    record = EvaluationRecord.read(folder / EVALUATION_FILE)
    parts = {"accuracy": record.accuracy, "measures": record.attacks, "stability": record.stability,
             "faithfulness": record.faithfulness}
    frames = {}
    for part, name in PER_IMAGE_FILES.items():
        if parts[part]:
            path = folder / name
            if not path.is_file():
                raise AttrobustError(f"{path} is missing (its evaluation.json lists it); run that evaluation again")
            frames[part] = read_csv_exact(path)
    return record, PerImage(**frames)


def evaluation_rows(record: EvaluationRecord, per_image: PerImage) -> pd.DataFrame:
    """The result rows of an evaluation: NA / AA, each attack's metrics and counts, each stability metric."""
    rows = []
    if record.accuracy is not None and per_image.accuracy is not None:
        table = per_image.accuracy
        n = len(table)
        natural = 100.0 * int(table["correct"].astype(bool).sum()) / n if n else float("nan")
        robust = 100.0 * int(table["robust"].astype(bool).sum()) / n if "robust" in table and n else None
        rows.append(accuracy_rows(RunIdentity(**record.accuracy), n, natural, robust))
    if record.attacks and per_image.measures is not None:
        metrics = protocol_metrics(record.eval["metrics"], record.eval.get("protocol", "reference"))
        for name, identity in record.attacks:
            part = per_image.measures[per_image.measures["attack"] == name].drop(columns="attack")
            rows.append(attribution_rows(RunIdentity(**identity), part.reset_index(drop=True), metrics))
    if record.stability is not None and per_image.stability is not None:
        metrics = build_stability(record.eval.get("stability", []))
        rows.append(image_mean_rows(RunIdentity(**record.stability), per_image.stability, metrics))
    if record.faithfulness is not None and per_image.faithfulness is not None:
        faithful = build_faithfulness(record.eval.get("faithfulness", []))
        rows.append(image_mean_rows(RunIdentity(**record.faithfulness), per_image.faithfulness, faithful))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=ROW_COLUMNS)


def merge_per_image(records: list[EvaluationRecord], parts: list[PerImage]) -> PerImage:
    """The shards' rows in the unsharded order: attacks in their order, images in evaluation order."""
    position = {index: at for at, index in enumerate(records[0].images)}
    attack_rank = {name: rank for rank, (name, _) in enumerate(records[0].attacks)}

    def ordered(frames: list[pd.DataFrame | None], by_attack: bool = False) -> pd.DataFrame | None:
        present = [frame for frame in frames if frame is not None]
        if not present:
            return None
        whole = pd.concat(present, ignore_index=True)
        keys = {"_position": whole["index"].map(position)}
        if by_attack:
            keys["_attack"] = whole["attack"].map(attack_rank)
        whole = whole.assign(**keys)
        order = ["_attack", "_position"] if by_attack else ["_position"]
        return whole.sort_values(order, kind="stable").drop(columns=list(keys)).reset_index(drop=True)

    return PerImage(ordered([p.accuracy for p in parts]), ordered([p.measures for p in parts], by_attack=True),
                    ordered([p.stability for p in parts]), ordered([p.faithfulness for p in parts]))


def is_finished_shard(folder: Path) -> bool:
    """A shard of a sharded evaluation that wrote all its rows (whose table is that of the merge)."""
    path = folder / EVALUATION_FILE
    return path.is_file() and EvaluationRecord.read(path).is_shard


def shard_groups(directory: Path) -> dict[str, dict[int, Path]]:
    """The finished shards under `directory` by evaluation (fingerprint) and shard number; of two finished runs of
    the same shard, the newer."""
    groups: dict[str, dict[int, Path]] = {}
    for path in sorted(directory.rglob(EVALUATION_FILE)):
        record = EvaluationRecord.read(path)
        if not record.is_shard:
            continue
        assert record.shard is not None
        shards = groups.setdefault(record.fingerprint, {})
        earlier = shards.get(record.shard)
        if earlier is None or path.stat().st_mtime > (earlier / EVALUATION_FILE).stat().st_mtime:
            shards[record.shard] = path.parent
    return groups


def merged_fingerprints(directory: Path) -> set[str]:
    """The evaluations under `directory` that a merge (or an unsharded run) already holds whole."""
    found = set()
    for path in directory.rglob(EVALUATION_FILE):
        record = EvaluationRecord.read(path)
        if not record.is_shard:
            found.add(record.fingerprint)
    return found


def merge_shards(folders: list[Path], out: Path) -> pd.DataFrame:
    """Merge the finished shards in `folders` (one evaluation, every shard once) into `out`: the per-image files, the
    result rows and tables, `evaluation.json`. Returns the summary table."""
    read = [read_evaluation(folder) for folder in folders]
    records = [record for record, _ in read]
    first = records[0]
    if {record.fingerprint for record in records} != {first.fingerprint}:
        raise AttrobustError(f"{', '.join(map(str, folders))} hold shards of different evaluations; merge the shards "
                             f"of one evaluation")
    present = sorted(record.shard for record in records if record.shard is not None)
    missing = sorted(set(range(first.num_shards)) - set(present))
    if missing or len(present) != first.num_shards:
        raise AttrobustError(f"shard(s) {missing or present} of the {first.num_shards} of this evaluation are missing "
                             f"or listed twice (a shard without {EVALUATION_FILE} did not finish); run "
                             f"{' and '.join(rerun_command(first.command, shard) for shard in missing) or 'each once'}"
                             f" (with hydra.run.dir=<its folder> a killed shard resumes its chunks)")
    per_image = merge_per_image(records, [part for _, part in read])
    merged = EvaluationRecord(**{**asdict(first), "shard": None, "command": [],
                                 "merged_from": [str(folder) for folder in folders]})
    out.mkdir(parents=True, exist_ok=True)
    _copy_overrides(folders[0], out)
    table = write_evaluation(out, merged, per_image)
    assert table is not None
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
    sweep (a merge into a run's own folder keeps that run's)."""
    source, target = shard / ".hydra" / "overrides.yaml", out / ".hydra" / "overrides.yaml"
    if not source.is_file() or target.is_file():
        return
    listed = yaml.safe_load(source.read_text(encoding="utf-8")) or []
    kept = [item for item in listed if item.split("=")[0].lstrip("+~") not in ("eval.shard", "eval.num_shards")]
    write_text_atomic(target, yaml.safe_dump(kept))


def merge_directory(directory: Path, only_unmerged: bool = False) -> list[tuple[Path, pd.DataFrame]]:
    """Merge every complete group of shards under `directory` into `<directory>/merged` (one group) or
    `<directory>/merged/<fingerprint>` (several); with `only_unmerged`, groups already held whole are skipped and an
    incomplete group is only warned about. Returns each merged folder and its summary table."""
    groups = shard_groups(directory)
    if only_unmerged:
        done = merged_fingerprints(directory)
        groups = {fingerprint: shards for fingerprint, shards in groups.items() if fingerprint not in done}
    merged = []
    for fingerprint, shards in groups.items():
        out = directory / MERGED_FOLDER if len(groups) == 1 else directory / MERGED_FOLDER / fingerprint[:12]
        try:
            table = merge_shards([shards[i] for i in sorted(shards)], out)
        except AttrobustError as error:
            if not only_unmerged:
                raise
            log.warning("not merged: %s", error)
            continue
        merged.append((out, table))
    return merged
