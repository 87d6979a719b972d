"""An evaluation's per-image rows on disk and the result rows made from them (the merge of a sharded evaluation:
reporting/merge.py).

Every `evaluate` and `attack` run writes the per-image rows of each of its parts (attrobust/parts: `accuracy.csv`,
one row per test image; `measures.csv`, one row per scored image and attack on explanations; `stability.csv`,
`faithfulness.csv`, `randomisation.csv`: one row per scored image) and then, last, `evaluation.json`: what was
evaluated (a fingerprint of the config without the shard keys and the settings that only say where or how it runs),
which shard, the images in their order, the units the work was cut into, and the identity of each line of result
rows of each part. The result rows (`results.csv`, the tables) are always made from the per-image rows by
`evaluation_rows`, so the shards of an evaluation, merged (`merge_shards`: their rows put back
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

from attrobust.atomic import read_csv_exact, write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.parts import PARTS, part_classes, per_image_files
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity
from attrobust.reporting.separation import SEPARATION_FILE
from attrobust.reporting.tables import RESULTS_FILE, write_results

log = logging.getLogger("attrobust")
EVALUATION_FILE = "evaluation.json"
PER_IMAGE_FILES = per_image_files()  # part name -> its per-image file
MERGED_FOLDER = "merged"


@dataclass(frozen=True)
class EvaluationRecord:
    """`evaluation.json`: what one run (or shard) evaluated and the identity of each part's result rows."""

    fingerprint: str                    # the config without eval.shard / eval.num_shards, and the checkpoint
    shard: int | None                   # None: the whole evaluation (or a merge of its shards)
    num_shards: int
    images: list[int]                   # the selected test images (test-split indices), in evaluation order
    eval: dict[str, Any]                # the `eval` settings (which metrics, the protocol)
    # part name -> its lines in order: (line name, RunIdentity of its rows); a part not measured is absent
    parts: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
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
        if not isinstance(self.parts, dict) or not all(
                name in PER_IMAGE_FILES and isinstance(lines, list) and all(
                    isinstance(line, tuple) and len(line) == 2 and isinstance(line[0], str) for line in lines)
                for name, lines in self.parts.items()):
            fail("parts", f"a mapping of parts ({', '.join(PER_IMAGE_FILES)}) to lists of [name, identity]")
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
            record = cls(**upgraded(data))
            for lines in record.parts.values():
                for _, identity in lines:
                    RunIdentity(**identity)  # every field, no other
            return record
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise AttrobustError(f"unreadable {path}: {(str(error).splitlines() or [repr(error)])[0]}; run that "
                                 f"evaluation again") from error


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A record's fields, with the per-part identities of records written before evaluation parts were registered
    (`accuracy`, `attacks`, `stability`, `faithfulness`) moved into `parts`, and each line a tuple."""
    data = dict(data)
    parts = data.pop("parts", {})
    if not isinstance(parts, dict):
        raise ValueError("'parts' must be a mapping of parts to lines")
    parts = dict(parts)
    for name in ("accuracy", "stability", "faithfulness"):
        identity = data.pop(name, None)
        if identity is not None:
            parts[name] = [(name, identity)]
    attacks = data.pop("attacks", [])
    if attacks:
        parts["attacks"] = attacks
    ordered = {part.registry_name: parts.pop(part.registry_name) for part in part_classes()
               if part.registry_name in parts}
    ordered.update(parts)  # an unknown part: refused by the record's check
    data["parts"] = {name: [tuple(line) if isinstance(line, list) else line for line in lines]
                     if isinstance(lines, list) else lines for name, lines in ordered.items()}
    return data


PerImage = dict[str, pd.DataFrame]  # part name -> its per-image rows (a part not measured is absent)


def write_evaluation(folder: Path, record: EvaluationRecord, per_image: PerImage) -> pd.DataFrame | None:
    """The per-image files, each atomically; of a whole evaluation its result rows and tables (`write_results`);
    then `evaluation.json`, which marks them complete. Returns the summary table (None for a shard)."""
    (folder / EVALUATION_FILE).unlink(missing_ok=True)  # an earlier run's: these files are not complete yet
    (folder / SEPARATION_FILE).unlink(missing_ok=True)  # an earlier run's check (write_checks writes this run's)
    digests = {}
    for part, name in PER_IMAGE_FILES.items():
        frame = per_image.get(part)
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
    table = None
    if not record.is_shard:
        problems = write_checks(folder, record, per_image)
        table = write_results(evaluation_rows(record, per_image), folder, settings, problems)
    record = EvaluationRecord(**{**asdict(record), "files": digests})
    write_text_atomic(folder / EVALUATION_FILE, json.dumps(asdict(record), indent=1) + "\n")
    return table


def write_checks(folder: Path, record: EvaluationRecord, per_image: PerImage) -> list[str]:
    """Each part's check of its numbers (`EvaluationPart.checks`: separation.csv of the attacks part, ...), written
    beside the results; returns the problems, each also logged as a warning."""
    problems = []
    for name in record.parts:
        checks = PARTS.get(name).checks(record, per_image[name]) if name in per_image else None  # type: ignore
        if checks is not None:
            write_text_atomic(folder / checks.file, checks.table.to_csv(index=False, float_format="%.6g"))
            problems += checks.problems
    for line in problems:
        log.warning("%s", line)
    return problems


def read_evaluation(folder: Path) -> tuple[EvaluationRecord, PerImage]:
    record = EvaluationRecord.read(folder / EVALUATION_FILE)
    frames = {}
    for part, name in PER_IMAGE_FILES.items():
        if record.parts.get(part):
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
    return record, frames


def evaluation_rows(record: EvaluationRecord, per_image: PerImage) -> pd.DataFrame:
    """The result rows of an evaluation: each part's, in the parts' order (attrobust/parts)."""
    rows = [PARTS.get(name).rows(record, [(line, RunIdentity(**identity)) for line, identity in lines],  # type: ignore
                                 per_image[name])
            for name, lines in record.parts.items() if lines and name in per_image]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=ROW_COLUMNS)


