"""Files from someone else (a model, a shard set, a run folder, a data folder) run no code, read and write nowhere
else, and cannot silently change results: each probe of the reliability audit, end to end through the CLI, checks
that its marker file never appears, that nothing outside the named folder changes, and that the command ends in one
line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN
from image_fixtures import make_gtsrb_official, make_image_folder
from torch import nn

from attrobust.errors import AttrobustError
from attrobust.models.programs import check_exported_archive

EXTERNAL = ["evaluate", "model=external", "dataset=mnist_mini", "eval.num_examples=4", "attributions=false",
            "attack.steps=1"]


class RunsCode:
    """Unpickling this calls os.system, which creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tree(folder: Path) -> dict[str, str]:
    """Every path under `folder` (links not followed) and its content digest, to compare before and after."""
    found = {}
    for path in sorted(folder.rglob("*")):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        found[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file"
                                                else kind)
    return found


def one_line(result, *words: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


# --- 1. code in a torch.export program -------------------------------------------------------------------------

def exported(path: Path) -> Path:
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    program = torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, path)
    return path


def rewrite(source: Path, target: Path, edit) -> Path:
    """A copy of the archive `source` with `edit(inner name, bytes) -> bytes | None` applied (None drops it)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            inner = info.filename.split("/", 1)[1]
            data = edit(inner, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return target


def pickled_weight(marker: Path):
    def edit(inner: str, data: bytes) -> bytes:
        if inner == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if inner == "data/weights/weight_0":
            buffer = io.BytesIO()
            torch.save(RunsCode(marker), buffer)
            return buffer.getvalue()
        return data
    return edit


def test_a_pt2_file_with_a_pickled_weight_runs_no_code(cli, tmp_path):
    rewrite(exported(tmp_path / "clean.pt2"), tmp_path / "evil.pt2", pickled_weight(tmp_path / "marker"))
    before = tree(tmp_path)
    result = cli(*EXTERNAL, "model.source=evil.pt2")
    one_line(result, "model.source=evil.pt2", "pickled")
    assert not (tmp_path / "marker").exists()
    assert tree(tmp_path) == before  # a refused start leaves nothing, not even outputs/


def test_every_pickling_entry_of_a_pt2_archive_is_refused(tmp_path):
    clean = exported(tmp_path / "clean.pt2")
    check_exported_archive(clean)  # a plain export passes
    marker = tmp_path / "marker"
    payload = io.BytesIO()
    torch.save(RunsCode(marker), payload)
    edits = {
        "sample inputs": lambda inner, data: payload.getvalue() if inner.startswith("data/sample_inputs/") else data,
        "opaque object": lambda inner, data: (data if inner != "data/constants/model_constants_config.json" else
                                              json.dumps({"config": {"c": {"path_name": "opaque_obj_0",
                                                                           "use_pickle": False}}}).encode()),
        "compiled code": lambda inner, data: data,  # the archive as saved, plus an AOTInductor entry (below)
        "older format": lambda inner, data: None if inner == "archive_format" else data,
    }
    for name, edit in edits.items():
        target = rewrite(clean, tmp_path / f"{name}.pt2", edit)
        if name == "compiled code":
            with zipfile.ZipFile(target, "a") as archive:
                archive.writestr("clean/data/aotinductor/model/model.so", b"\x7fELF")
        with pytest.raises(AttrobustError, match="is refused"):
            check_exported_archive(target)
    (tmp_path / "random.pt2").write_bytes(os.urandom(512))
    with pytest.raises(AttrobustError, match="not a readable torch.export archive"):
        check_exported_archive(tmp_path / "random.pt2")
    assert not marker.exists()


# --- 2. names read from evaluation.json ------------------------------------------------------------------------

def fake_shard(folder: Path, fingerprint: str, shard: int) -> None:
    folder.mkdir(parents=True)
    record = {"fingerprint": fingerprint, "shard": shard, "num_shards": 2, "images": [0, 1], "eval": {},
              "accuracy": None}
    (folder / "evaluation.json").write_text(json.dumps(record))


def test_a_fingerprint_cannot_name_a_folder_outside_the_merge(cli, tmp_path):
    (tmp_path / "sibA").mkdir()
    (tmp_path / "sibA" / "results.csv").write_text("theirs\n")
    for shard in (0, 1):
        fake_shard(tmp_path / "shards" / str(shard), "/../../sibA", shard)
    before = tree(tmp_path)
    one_line(cli("merge", "shards"), "evaluation.json", "fingerprint", "hexadecimal")
    assert tree(tmp_path) == before
    assert cli("report", "shards").exit_code == 2  # nothing to report: the records are unreadable
    assert tree(tmp_path) == before


# --- 3. file names read from the GTSRB test CSV ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../../secret.ppm", "/abs/secret.ppm"])
def test_a_gtsrb_csv_row_cannot_name_a_file_outside_its_folder(cli, tmp_path, name):
    make_gtsrb_official(tmp_path / "data", classes=3, per_class=4, test=6)
    csv = tmp_path / "data" / "gtsrb" / "GT-final_test.csv"
    csv.write_text(csv.read_text().replace("00000.ppm", name, 1))
    before = tree(tmp_path)
    result = cli("train", *TINY_RUN, "dataset=gtsrb", "dataset.num_classes=3", "paths.data=data")
    one_line(result, "GT-final_test.csv", "not a plain file name")
    assert tree(tmp_path) == before


# --- 4. symbolic links inside received run folders -------------------------------------------------------------

@pytest.fixture
def trained(cli, tmp_path) -> Path:
    result = cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "run"


@pytest.mark.parametrize("name", [".attrobust.lock", "train.log", ".hydra"])
def test_train_never_writes_through_a_link_in_its_run_folder(cli, tmp_path, trained, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep\n")
    if (trained / name).is_dir():
        import shutil
        shutil.rmtree(trained / name)
    (trained / name).unlink(missing_ok=True)
    (trained / name).symlink_to(outside / "victim" if name != ".hydra" else outside)
    before = tree(tmp_path)
    result = cli("train", *TINY_RUN, "hydra.run.dir=run", "eval_at_end=false", "train.epochs=2")
    one_line(result, str(trained / name), "symbolic link")
    assert tree(tmp_path) == before


def test_evaluate_never_writes_through_a_linked_evaluate_folder(cli, tmp_path, trained):
    outside = tmp_path / "outside"
    outside.mkdir()
    (trained / "evaluate").symlink_to(outside)
    before = tree(tmp_path)
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=4", "attributions=false", "attack.steps=1")
    one_line(result, "evaluate", "symbolic link")
    assert tree(tmp_path) == before


def test_a_merge_never_writes_through_a_linked_merged_folder(cli, tmp_path, trained):
    for shard in (0, 1):
        result = cli("evaluate", "checkpoint=run", "eval.num_examples=4", "attributions=false", "attack.steps=1",
                     f"eval.shard={shard}", "eval.num_shards=2", f"hydra.run.dir=shards/{shard}")
        assert result.exit_code == 0, result.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "results.csv").write_text("theirs\n")
    (tmp_path / "shards" / "merged").symlink_to(outside)
    before = tree(tmp_path)
    one_line(cli("merge", "shards"), "merged", "symbolic link")
    assert tree(tmp_path) == before


def test_a_cut_short_per_image_file_is_never_merged(cli, tmp_path, trained):
    for shard in (0, 1):
        result = cli("evaluate", "checkpoint=run", "eval.num_examples=8", "attributions=false", "attack.steps=1",
                     "eval.batch_size=2", f"eval.shard={shard}", "eval.num_shards=2", f"hydra.run.dir=shards/{shard}")
        assert result.exit_code == 0, result.stderr
    accuracy = tmp_path / "shards" / "1" / "accuracy.csv"
    accuracy.write_text("\n".join(accuracy.read_text().splitlines()[:-1]) + "\n")
    one_line(cli("merge", "shards"), "accuracy.csv", "cut short or changed")
    assert not (tmp_path / "shards" / "merged").exists()


# --- 5. data folders: links out of the root, a swapped cache -----------------------------------------------------

FOLDER = ["dataset=folder", "dataset.path=data", "dataset.size=[8,8]"]


def test_a_linked_class_folder_is_not_read(cli, tmp_path):
    make_image_folder(tmp_path / "data")
    make_image_folder(tmp_path / "elsewhere", classes=("secret",))
    (tmp_path / "data" / "train" / "zz_secret").symlink_to(tmp_path / "elsewhere" / "train" / "secret")
    before = tree(tmp_path)
    result = cli("train", *TINY_RUN, *FOLDER)
    one_line(result, "zz_secret", "outside the data folder", "dataset.follow_links=true")
    assert tree(tmp_path) == before


def test_a_swapped_cache_entry_is_rebuilt(cli, tmp_path):
    make_image_folder(tmp_path / "data")
    first = cli("train", *TINY_RUN, *FOLDER, "hydra.run.dir=first")
    assert first.exit_code == 0, first.stderr
    (entry,) = (tmp_path / "data" / ".attrobust_cache").glob("*.pt")
    payload = torch.load(entry, weights_only=True)
    payload["test_images"] = torch.zeros_like(payload["test_images"])  # same key, other tensors
    torch.save(payload, entry)
    second = cli("train", *TINY_RUN, *FOLDER, "hydra.run.dir=second")
    assert second.exit_code == 0, second.stderr
    assert "does not match its source files or its own tensors" in (tmp_path / "second" / "train.log").read_text()
    rows = [(tmp_path / run / "table.csv").read_text() for run in ("first", "second")]
    assert rows[0] == rows[1]


# --- what a received file said, named as the file's -----------------------------------------------------------

def test_an_npz_of_python_objects_runs_no_code_and_gets_no_unsafe_advice(cli, tmp_path):
    import numpy as np

    (tmp_path / "d").mkdir()
    x = np.empty(12, dtype=object)
    x[0] = RunsCode(tmp_path / "marker")
    for split in ("train", "test"):
        np.savez(tmp_path / "d" / f"{split}.npz", x=x, y=np.arange(12) % 3)
    result = cli("train", *TINY_RUN, "dataset=npz", "dataset.path=d", "hydra.run.dir=run")
    one_line(result, "refused npz file d/train.npz", "array of Python objects")
    assert "allow_pickle" not in result.stderr and not (tmp_path / "marker").exists()


@pytest.mark.parametrize("field,edit,words", [
    ("dataset_cfg", {"mean": "abc"}, ("edited.pt stores dataset settings", "dataset.mean must be a list")),
    ("threat_cfg", {"eps": "abc"}, ("edited.pt stores threat settings", "threat.eps must be a number")),
    ("model_cfg", {"name": "external"}, ("edited.pt stores model settings", "unknown model 'external'")),
])
def test_a_bad_value_stored_in_a_checkpoint_is_named_as_the_checkpoints(cli, tmp_path, trained, field, edit, words):
    payload = torch.load(trained / "model.pt", weights_only=True)
    payload[field] = {**payload[field], **edit}
    torch.save(payload, tmp_path / "edited.pt")
    result = cli("evaluate", "checkpoint=edited.pt", "eval.num_examples=4", "hydra.run.dir=eval")
    one_line(result, *words, "comes from the checkpoint, not the command line")
    assert {path.name for path in (tmp_path / "eval").iterdir()} == {"failed.txt"}  # the user named the folder


def test_a_checkpoint_path_that_is_no_file_says_so(cli, tmp_path):
    one_line(cli("evaluate", "checkpoint=/dev/null"), "checkpoint=/dev/null is neither a run folder nor a file")
    assert not (tmp_path / "outputs").exists()
