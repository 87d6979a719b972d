"""An evaluation's per-image rows on disk, the result rows made from them, and the merge of a sharded evaluation.

Every `evaluate` and `attack` run writes its per-image rows (`accuracy.csv`: one row per test image; `measures.csv`:
one row per scored image and attack on explanations; `stability.csv`, `faithfulness.csv`: one row per scored image)
and then, last, `evaluation.json`: what was evaluated (a fingerprint of the config without the shard keys and the
settings that only say where or how it runs), which shard, the images in their order, the units the work was cut
into, and the identity of each part's result rows. The result rows (`results.csv`, the tables) are always made from
the per-image rows by `evaluation_rows`, so the shards of an evaluation, merged (`merge_shards`: their rows put back
in the unsharded order), give exactly the table of the unsharded run. A merge refuses shards that cut the work
into other units (device type, chunk sizes) or that do not add up to every image once. A shard without
`evaluation.json` did not finish: run its command again (its `provenance.json` has it).

Shards arrive from other machines and people, so `evaluation.json` is read as data: every field of its type, the
fingerprint a hexadecimal digest (it names the merge's folder), and the SHA-256 of each per-image file it lists, so a
file cut short or changed after its evaluation wrote it is refused, never merged. A merge never writes through a
symbolic link inside its folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from attrobust.atomic import read_csv_exact, write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.rundir import refuse_links
from attrobust.metrics import protocol_metrics
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity, accuracy_rows, attribution_rows, image_mean_rows
from attrobust.reporting.tables import RESULTS_FILE, write_results
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
    device: str = "cpu"                 # the device type: it sizes the units (auto chunk sizes)
    chunks: dict[str, list[int]] = field(default_factory=dict)  # attack name -> [chunk, piece] sizes it ran with
    certificate: dict[str, float] | None = None  # Lipschitz models: lipschitz, l2 radius, linf eps, dimension
    files: dict[str, str] = field(default_factory=dict)  # per-image file name -> its SHA-256 (empty: older records)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # "setting", "evaluation": reporting/settings.py

    def __post_init__(self) -> None:
        """Each field of its type (a record may come from someone else: nothing in it names a path)."""
        def fail(name: str, what: str) -> None:
            raise ValueError(f"'{name}' must be {what}, got {getattr(self, name)!r}"[:300])

        def ints(values: Any) -> bool:
            return isinstance(values, list) and all(type(v) is int for v in values)

        if not isinstance(self.fingerprint, str) or not re.fullmatch(r"[0-9a-f]{6,64}", self.fingerprint):
            fail("fingerprint", "a hexadecimal digest")
        if type(self.num_shards) is not int or self.num_shards < 1:
            fail("num_shards", "a whole number >= 1")
        if self.shard is not None and (type(self.shard) is not int or not 0 <= self.shard < self.num_shards):
            fail("shard", f"null or a whole number in 0 .. {self.num_shards - 1}")
        if not ints(self.images) or len(set(self.images)) != len(self.images):
            fail("images", "a list of distinct test indices")
        if not isinstance(self.eval, dict):
            fail("eval", "a mapping of eval settings")
        for name in ("command", "merged_from"):
            if not isinstance(getattr(self, name), list) or not all(isinstance(v, str) for v in getattr(self, name)):
                fail(name, "a list of strings")
        if not isinstance(self.device, str) or not re.fullmatch(r"[a-z]+", self.device):
            fail("device", "a device type such as cpu or cuda")
        if not isinstance(self.chunks, dict) or not all(ints(v) and len(v) == 2 for v in self.chunks.values()):
            fail("chunks", "a mapping of attack names to [chunk, piece] sizes")
        if not isinstance(self.files, dict) or not all(name in PER_IMAGE_FILES.values() and isinstance(digest, str)
                                                       for name, digest in self.files.items()):
            fail("files", f"a mapping of per-image files ({', '.join(PER_IMAGE_FILES.values())}) to digests")
        scalars = (str, int, float, bool, type(None))
        if not isinstance(self.settings, dict) or not set(self.settings) <= {"setting", "evaluation"} or not all(
                isinstance(part, dict) and all(isinstance(v, scalars) for v in part.values())
                for part in self.settings.values()):
            fail("settings", "a mapping of 'setting' and 'evaluation' to flat key: value maps")

    @property
    def is_shard(self) -> bool:
        return self.shard is not None and self.num_shards > 1

    @classmethod
    def read(cls, path: Path) -> EvaluationRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            data["attacks"] = [(name, identity) for name, identity in data.get("attacks", [])]
            record = cls(**data)
            for identity in (record.accuracy, record.stability, record.faithfulness,
                             *(identity for _, identity in record.attacks)):
                if identity is not None:
                    RunIdentity(**identity)  # every field, no other
            return record
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise AttrobustError(f"unreadable {path}: {(str(error).splitlines() or [repr(error)])[0]}; run that "
                                 f"evaluation again") from error


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
    digests = {}
    for part, name in PER_IMAGE_FILES.items():
        frame = getattr(per_image, part)
        if frame is not None:
            text = frame.to_csv(index=False)
            write_text_atomic(folder / name, text)
            digests[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        else:
            (folder / name).unlink(missing_ok=True)  # an earlier run's, of another evaluation
    if record.is_shard:  # an earlier whole run's tables here would read as this folder's results
        for name in (RESULTS_FILE, "table.csv", "table.md"):
            (folder / name).unlink(missing_ok=True)
    settings = (record.settings["setting"], record.settings["evaluation"]) if len(record.settings) == 2 else None
    table = None if record.is_shard else write_results(evaluation_rows(record, per_image), folder, settings)
    record = EvaluationRecord(**{**asdict(record), "files": digests})
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
            expected = record.files.get(name)
            if expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
                raise AttrobustError(f"{path} is not the file its evaluation wrote (cut short or changed since: its "
                                     f"SHA-256 differs from evaluation.json's); run that evaluation again")
            try:
                frames[part] = read_csv_exact(path)
            except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
                raise AttrobustError(f"unreadable {path}: {str(error).splitlines()[0]}; run that evaluation "
                                     f"again") from error
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
        if record.certificate is not None and "margin" in table:
            rows.append(certified_rows(RunIdentity(**record.accuracy), table, record.certificate))
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


def certified_rows(identity: RunIdentity, accuracy: pd.DataFrame, certificate: dict[str, float]) -> pd.DataFrame:
    """Certified accuracy of a Lipschitz model (constant L in L2): an image is certified at L2 radius r when it is
    classified correctly and its logit margin exceeds sqrt(2) L r (each logit difference is sqrt(2) L-Lipschitz). At
    the L-inf eps the certificate uses the L2 ball holding the L-inf ball, radius eps * sqrt(dimension)."""
    margin, correct = accuracy["margin"].to_numpy(), accuracy["correct"].astype(bool).to_numpy()
    n = len(accuracy)
    values = []
    for metric, radius in (("certified_accuracy_l2", certificate["l2"]),
                           ("certified_accuracy_linf", certificate["linf"] * certificate["dimension"] ** 0.5)):
        certified = correct & (margin > 2 ** 0.5 * certificate["lipschitz"] * radius)
        values.append({**asdict(identity), "metric": metric, "value": 100.0 * int(certified.sum()) / n if n else
                       float("nan"), "unit": "%", "n": n})
    return pd.DataFrame(values, columns=ROW_COLUMNS)


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


def check_coverage(record: EvaluationRecord, per_image: PerImage) -> None:
    """The merged rows hold every image once: accuracy every selected image, each attack and the stability and
    faithfulness parts the same scored images. Shards that cut the work differently fail here."""
    problems = []
    if per_image.accuracy is not None and per_image.accuracy["index"].tolist() != record.images:
        problems.append("accuracy rows do not cover each selected image once")
    scored: list[tuple[str, pd.Series]] = []
    if per_image.measures is not None:
        if per_image.measures.duplicated(["attack", "index"]).any():
            problems.append("an attack scores an image twice")
        scored += [(f"attack {name}", part["index"]) for name, part in per_image.measures.groupby("attack")]
    scored += [(part, frame["index"]) for part, frame in (("stability", per_image.stability),
                                                            ("faithfulness", per_image.faithfulness))
               if frame is not None]
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
    result rows and tables, `evaluation.json` (and with `copy_overrides` the first shard's Hydra overrides, for a
    folder of its own). Returns the summary table."""
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
    if copy_overrides:
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
