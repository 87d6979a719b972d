"""Feed attrobust bad inputs, crafted files and environment faults, and count how each one ends.

Each case runs `python -m attrobust ...` in a fresh folder (a subprocess, as a user would) and is classified:
- `one line`: a non-zero exit with exactly one `error:` line and no traceback (what every case should give);
- `listed`: (report cases) exit 0 with the broken run named in a `warning:` line;
- `traceback`: a Python traceback reached the user;
- `accepted`: exit 0 for an input that makes the measurement impossible (a silent acceptance);
- `other`: anything else (no message, several error lines, a timeout).
- `rebuilt`: (cache cases) exit 0 after a warning that the cache entry was rebuilt;
- `works`: (a documented input once refused) exit 0;
- `weak`: one line that does not name what it must (the key, the file, where the value came from: `mentions`) or
  says what it must not (advice that would run code, a key this command does not have: `never`).
Security cases also fail when their marker file appears (code ran from a data file or checkpoint) or when anything
in the case's `outside/` folder (a stand-in for the rest of the machine) changed.
Leftovers: the files and folders the command left in its folder (what a failed start should not leave, `outputs/`
included).

    python scripts/audit_bad_inputs.py --out audit.csv               # this checkout
    python scripts/audit_bad_inputs.py --code /path/to/other/checkout  # another version, same cases

`--code` puts that checkout first on PYTHONPATH (its package and its conf/), so two versions can be compared with
one environment. Permission faults are not among the cases: as root (this machine) chmod does not stop a write;
the test suite simulates them.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

TINY = ["model=small_cnn", "train.epochs=1", "train.num_examples=100", "train.batch_size=50", "eval.num_examples=50",
        "threat.pgd.steps=2"]
FAST_EVAL = ["eval.num_examples=4", "attack.steps=1", "attribution_attack.steps=2", "explainer.steps=4"]


class RunsCode:
    """Unpickling this calls os.system, which creates the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    setup: Callable[[Path, Path], None] | None = None  # (case folder, trained checkpoint folder)
    expect: str = "one line"                           # or "listed" (report), "rebuilt" (cache), "works"
    security: bool = False
    mentions: tuple[str, ...] = ()                     # the one line must contain each of these
    never: tuple[str, ...] = ()                        # ... and none of these


def _npz(folder: Path, labels: np.ndarray | None = None, nan: bool = False) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        x = rng.random((12, 8, 8), dtype=np.float32)
        if nan:
            x[0, 0, 0] = np.nan
        np.savez(folder / f"{split}.npz", x=x, y=np.arange(12) % 3 if labels is None else labels)


def _folder_with_empty_class(folder: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for name in ("cat", "dog", "emu"):
            (folder / split / name).mkdir(parents=True)
            if split == "train" and name == "dog":
                continue
            for index in range(2):
                Image.new("RGB", (8, 8), (index * 90, 20, 40)).save(folder / split / name / f"{index}.png")


def _gtsrb_payload(root: Path, marker: Path) -> None:
    (root / "gtsrb").mkdir(parents=True)
    for name in ("train.p", "test.p"):
        with open(root / "gtsrb" / name, "wb") as handle:
            pickle.dump({"features": RunsCode(str(marker)), "labels": np.zeros(3)}, handle)


def _edited_checkpoint(case: Path, trained: Path, edit: Callable[[dict], None]) -> None:
    payload = torch.load(trained / "model.pt", weights_only=True)
    edit(payload)
    torch.save(payload, case / "edited.pt")


def _nan_weights(payload: dict) -> None:
    first = next(k for k, v in payload["model_state"].items() if v.is_floating_point() and v.numel() > 3)
    payload["model_state"][first].view(-1)[:3] = float("nan")


def _report_folder(case: Path, trained: Path, damage: Callable[[Path], None]) -> None:
    for name in ("a", "b"):
        shutil.copytree(trained, case / "sweep" / name)
    damage(case / "sweep" / "b")


def _copy_checkpoint_with_bad_root(case: Path, trained: Path) -> None:
    _gtsrb_payload(case / "attacker", case / "marker")
    _edited_checkpoint(case, trained, lambda p: p.update(dataset_cfg={**p["dataset_cfg"], "name": "gtsrb",
                                                                      "root": str(case / "attacker"),
                                                                      "layout": "pickle"}))


def _outside(case: Path) -> Path:
    """`outside/` with a file in it: what a received file must never read into a run or write over."""
    (case / "outside").mkdir(exist_ok=True)
    (case / "outside" / "victim").write_text("keep\n")
    return case / "outside"


def _link(case: Path, trained: Path, name: str, to_folder: bool) -> None:
    outside = _outside(case)
    target = trained / name
    if target.is_dir():
        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    target.symlink_to(outside if to_folder else outside / "victim")


def _exported(case: Path, edit: Callable[[str, bytes], bytes | None] | None = None) -> None:
    """`evil.pt2`: a torch.export program of a linear MNIST classifier, its archive entries passed through `edit`."""
    import io
    import json
    import zipfile

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    program = torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, case / "clean.pt2")

    def pickled(inner: str, data: bytes) -> bytes | None:
        if inner == "data/weights/model_weights_config.json":
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        if inner == "data/weights/weight_0":
            buffer = io.BytesIO()
            torch.save(RunsCode(str(case / "marker")), buffer)
            return buffer.getvalue()
        return data

    with zipfile.ZipFile(case / "clean.pt2") as zin, zipfile.ZipFile(case / "evil.pt2", "w") as zout:
        for info in zin.infolist():
            data = (edit or pickled)(info.filename.split("/", 1)[1], zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def _user_module(case: Path) -> None:
    (case / "usernet.py").write_text(
        "import torch\n"
        "def empty():\n    return torch.nn.Flatten()\n"
        "def broken():\n    raise RuntimeError('my network does not build')\n"
        "def nan_net():\n    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n"
        "    torch.nn.init.constant_(net[1].weight, float('nan'))\n    return net\n")


def _shards(case: Path, damage: Callable[[Path], None]) -> None:
    """Two finished shards of an evaluation (run by the case's own command first), then `damage(shards folder)`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for shard in (0, 1):
        subprocess.run([sys.executable, "-m", "attrobust", "evaluate", "checkpoint=ckpt", "eval.num_examples=8",
                        "attributions=false", "attack.steps=1", "eval.batch_size=2", f"eval.shard={shard}",
                        "eval.num_shards=2", f"hydra.run.dir=shards/{shard}"], cwd=case, env=env, check=True,
                       capture_output=True)
    damage(case / "shards")


def _fake_shards(case: Path) -> None:
    import json

    _outside(case)
    for shard in (0, 1):
        (case / "shards" / str(shard)).mkdir(parents=True)
        record = {"fingerprint": "/../../outside", "shard": shard, "num_shards": 2, "images": [0, 1], "eval": {},
                  "accuracy": None}
        (case / "shards" / str(shard) / "evaluation.json").write_text(json.dumps(record))
    (case / "shards" / "merged").mkdir()
    (case / "shards" / "merged" / "evaluation.json").write_text(json.dumps({**record, "fingerprint": "abcdef"}))


def _gtsrb_official(case: Path, filename: str | None = None, string_labels: bool = False) -> None:
    """A GTSRB tree in the official layout (3 classes), or the pickle layout with string labels."""
    from PIL import Image

    base = case / "data" / "gtsrb"
    if string_labels:
        base.mkdir(parents=True)
        for name in ("train.p", "test.p"):
            with open(base / name, "wb") as handle:
                pickle.dump({"features": np.zeros((6, 32, 32, 3), np.uint8),
                             "labels": np.array(["a", "b", "c"] * 2)}, handle)
        return
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    for label in range(3):
        folder = base / "GTSRB" / "Training" / f"{label:05d}"
        folder.mkdir(parents=True)
        for index in range(4):
            Image.new("RGB", (32, 32), (label * 80, index * 40, 9)).save(folder / f"{index:05d}_00000.ppm")
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = [header]
    for index in range(6):
        Image.new("RGB", (32, 32), (index * 30, 9, 9)).save(images / f"{index:05d}.ppm")
        rows.append(f"{index:05d}.ppm;32;32;5;5;27;27;{index % 3}")
    _outside(case)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(case / "outside" / "secret.ppm")
    if filename is not None:
        rows[1] = rows[1].replace("00000.ppm", filename)
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def _bomb_png(folder: Path) -> None:
    """A class folder dataset with one PNG whose header declares 40000 x 40000 pixels."""
    import struct
    import zlib

    _folder_with_empty_class(folder)
    (folder / "train" / "dog" / "0.png").parent.mkdir(parents=True, exist_ok=True)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    (folder / "train" / "dog" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                                                     chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _linked_class(case: Path) -> None:
    _folder_with_empty_class(case / "d")
    (case / "d" / "train" / "dog" / "0.png").parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for index in range(2):
        Image.new("RGB", (8, 8), (index * 90, 90, 40)).save(case / "d" / "train" / "dog" / f"{index}.png")
    outside = _outside(case)
    Image.new("RGB", (8, 8), (5, 5, 5)).save(outside / "secret.png")
    (case / "d" / "train" / "zz_secret").symlink_to(outside)


def _swapped_cache(case: Path) -> None:
    _linked_class(case)
    (case / "d" / "train" / "zz_secret").unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "attrobust", "train", *TINY, "dataset=folder", "dataset.path=d",
                    "dataset.size=[8,8]", "hydra.run.dir=first"], cwd=case, env=env, check=True, capture_output=True)
    (entry,) = (case / "d" / ".attrobust_cache").glob("*.pt")
    payload = torch.load(entry, weights_only=True)
    payload["test_images"] = torch.zeros_like(payload["test_images"])
    torch.save(payload, entry)
    shutil.rmtree(case / "first")


def _cut_last_line(path: Path) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


def _killed_attack_chunks(case: Path, damage: Callable[[Path], None]) -> None:
    """An evaluation run to the end in `ev/`, its chunk folder put back as a killed run leaves it, then damaged."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "attrobust", "evaluate", "checkpoint=ckpt", *FAST_EVAL,
               "eval.attribution_batch_size=1", "eval.baselines=[]", "hydra.run.dir=ev"]
    subprocess.run(command, cwd=case, env=env, check=True, capture_output=True)
    parts = case / "ev" / "measures.parts" / "topk"
    parts.mkdir(parents=True)
    damage(parts)


def cases() -> list[Case]:
    train = [
        ("seed not a number", ["seed=abc"]), ("negative seed", ["seed=-1"]), ("device meta", ["device=meta"]),
        ("device mps", ["device=mps"]), ("device unknown", ["device=tpu"]),
        ("adam betas out of range", ["optim.betas=[2,0.5]"]), ("lr infinite", ["optim.lr=inf"]),
        ("lr negative", ["optim.lr=-1"]), ("sgd momentum 1", ["optim=sgd", "optim.momentum=1"]),
        ("std zero", ["dataset.std=[0]"]), ("eps infinite", ["threat.eps=inf"]),
        ("eps negative", ["threat.eps=-0.1"]),
        ("bool as word", ["eval_at_end=no"]), ("batch size 0", ["train.batch_size=0"]),
        ("epochs negative", ["train.epochs=-1"]), ("steps and epochs", ["train.steps=5"]),
        ("steps batch beyond data", ["train.epochs=null", "train.steps=5", "train.batch_size=500"]),
        ("unknown penalty form", ["reg=input_grad", "reg.gradient_of=batch"]), ("unknown init", ["model.init=tf"]),
        ("pgd steps negative", ["reg=pgd", "reg.steps=-1"]), ("recompute without max_points",
                                                               ["reg=ig_norm", "reg.recompute=true"]),
        ("unknown dataset", ["dataset=mnits"]), ("unknown preset", ["+experiment=nonexistent"]),
        ("unknown key", ["reg.wieght=1"]), ("adam lr 1e30 diverges", ["optim.lr=1e30"]),
    ]
    out = [Case(name, ["train", *TINY, *args]) for name, args in train]
    longer = [arg for arg in TINY if not arg.startswith("train.epochs=")] + ["train.epochs=5"]
    out.append(Case("sgd lr 1e6 diverges to NaN", ["train", *longer, "optim=sgd", "optim.lr=1e6"]))
    out += [
        Case("npz with NaN pixels", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _npz(case / "d", nan=True)),
        Case("npz with one class", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _npz(case / "d", labels=np.zeros(12, dtype=np.int64))),
        Case("empty class folder", ["train", *TINY, "dataset=folder", "dataset.path=d", "dataset.size=[8,8]"],
             lambda case, _: _folder_with_empty_class(case / "d")),
        Case("missing data folder", ["train", *TINY, "dataset=mnist", "paths.data=nodata"]),
        Case("gtsrb preset without pickles", ["train", "+experiment=rar_gtsrb_natural", "train.steps=1"]),
        Case("crafted gtsrb pickle", ["train", *TINY, "dataset=gtsrb", "dataset.num_classes=3"],
             lambda case, _: _gtsrb_payload(case / "data", case / "marker"), security=True),
    ]
    evaluate = [
        ("k beyond the map", ["attribution_attack.k=100000"]), ("eval_k beyond the map",
                                                                ["attribution_attack.eval_k=785"]),
        ("attributions as word", ["attributions=maybe"]), ("figure_examples not a number", ["figure_examples=abc"]),
        ("attack steps 0", ["attribution_attack.steps=0"]), ("attack eps infinite", ["attribution_attack.eps=inf"]),
        ("unknown attribution attack", ["attack@attribution_attack=topkk"]), ("absent cuda device", ["device=cuda:7"]),
        ("unknown explainer", ["explainer=saliency"]), ("unknown metric", ["eval.metrics=[kendall,lens]"]),
        ("metrics not a list", ["eval.metrics=kendall"]), ("metric listed twice", ["eval.metrics=[kendall,kendall]"]),
        ("lens window even", ["eval.metrics=[{name:lens_recall,window:4}]"]),
        ("baseline that is an attack", ["eval.baselines=[mass_center]"]), ("ig steps 0", ["explainer.steps=0"]),
        ("baseline twice", ["eval.baselines=[random_sign,random_sign]"]),
        ("explainer as an attack key", ["+attribution_attack.explainer=ig"]),
        ("eval_k all of the map", ["attribution_attack.eval_k=784"]),
        ("index outside the test set", ["eval.indices=[99999]"]), ("class that does not exist", ["eval.classes=[10]"]),
        ("sample larger than the selection", ["eval.sample=100000"]),
        ("unknown protocol", ["eval.protocol=strong"]), ("figure images unknown", ["figure_images=most"]),
    ]
    out += [Case(name, ["evaluate", "checkpoint=ckpt", *FAST_EVAL, *args]) for name, args in evaluate]
    explainers = [  # explainers without IG's steps
        ("gradcam layer unknown", ["explainer=gradcam", "explainer.layer=net.x"]),
        ("smoothgrad wrapping itself", ["explainer=smoothgrad", "explainer.wraps.name=smoothgrad"]),
        ("smoothgrad samples 0", ["explainer=smoothgrad", "explainer.samples=0"]),
        ("gradcam on a model without its layer", ["explainer=gradcam", "explainer.layer=net.classifier.9"]),
    ]
    out += [Case(name, ["evaluate", "checkpoint=ckpt", *FAST_EVAL[:-1], *args]) for name, args in explainers]
    out += [
        Case("checkpoint path missing", ["evaluate", "checkpoint=no/such/run"]),
        Case("checkpoint random bytes", ["evaluate", "checkpoint=random.pt"],
             lambda case, _: (case / "random.pt").write_bytes(os.urandom(4096))),
        Case("checkpoint cut short", ["evaluate", "checkpoint=cut.pt"],
             lambda case, trained: (case / "cut.pt").write_bytes((trained / "model.pt").read_bytes()[:20000])),
        Case("checkpoint without model_state", ["evaluate", "checkpoint=edited.pt"],
             lambda case, trained: _edited_checkpoint(case, trained, lambda p: p.pop("model_state"))),
        Case("checkpoint without dataset_cfg", ["evaluate", "checkpoint=edited.pt"],
             lambda case, trained: _edited_checkpoint(case, trained, lambda p: p.pop("dataset_cfg"))),
        Case("checkpoint with NaN weights", ["evaluate", "checkpoint=edited.pt", *FAST_EVAL],
             lambda case, trained: _edited_checkpoint(case, trained, _nan_weights)),
        Case("checkpoint naming os.system", ["evaluate", "checkpoint=x.pt"],
             lambda case, _: torch.save({"format": "attrobust-checkpoint", "version": 1,
                                         "model_state": RunsCode(str(case / "marker"))}, case / "x.pt"),
             security=True),
        Case("checkpoint pointing at a crafted data root", ["evaluate", "checkpoint=edited.pt", *FAST_EVAL],
             _copy_checkpoint_with_bad_root, security=True),
        Case("attack command with pgd", ["attack", "checkpoint=ckpt", "attack=pgd"]),
        Case("attack command k beyond the map", ["attack", "checkpoint=ckpt", "attack.k=100000"]),
        Case("report of a missing folder", ["report", "nowhere"]),
        Case("report: empty results.csv", ["report", "sweep"], lambda case, trained: _report_folder(
            case, trained, lambda run: (run / "results.csv").write_text("")), expect="listed"),
        Case("report: truncated results.csv", ["report", "sweep"], lambda case, trained: _report_folder(
            case, trained, lambda run: (run / "results.csv").write_text((run / "results.csv").read_text()[:150])),
            expect="listed"),
        Case("report: broken overrides.yaml", ["report", "sweep"], lambda case, trained: _report_folder(
            case, trained, lambda run: (run / ".hydra/overrides.yaml").write_text("- [unclosed")), expect="listed"),
        Case("report: empty failed.txt", ["report", "sweep"], lambda case, trained: _report_folder(
            case, trained, lambda run: ((run / "results.csv").unlink(), (run / "failed.txt").write_text(""))),
            expect="listed"),
    ]
    out += received_file_cases() + more_bad_settings() + weak_messages()
    return out


def received_file_cases() -> list[Case]:
    """Issue 25's probes: files from someone else (a model, shards, a run folder, a data folder)."""
    train_again = ["train", *TINY, "hydra.run.dir=ckpt", "eval_at_end=false", "train.epochs=2"]
    evaluate = ["evaluate", "checkpoint=ckpt", *FAST_EVAL]
    external = ["evaluate", "model=external", "dataset=mnist_mini", "eval.num_examples=4", "attributions=false",
                "attack.steps=1"]
    return [
        Case("pt2 with a pickled weight", [*external, "model.source=evil.pt2"], lambda c, _: _exported(c),
             security=True),
        Case("pt2 of random bytes", [*external, "model.source=r.pt2"],
             lambda c, _: (c / "r.pt2").write_bytes(os.urandom(2048))),
        Case("pt2 empty", [*external, "model.source=e.pt2"], lambda c, _: (c / "e.pt2").write_bytes(b"")),
        Case("fingerprint climbing out of the merge", ["merge", "shards"], lambda c, _: _fake_shards(c),
             security=True),
        Case("gtsrb csv row climbing out", ["train", *TINY, "dataset=gtsrb", "dataset.num_classes=3",
                                            "paths.data=data"],
             lambda c, _: _gtsrb_official(c, "../../../../outside/secret.ppm"), security=True),
        Case("gtsrb csv row with an absolute path", ["train", *TINY, "dataset=gtsrb", "dataset.num_classes=3",
                                                     "paths.data=data"],
             lambda c, _: _gtsrb_official(c, str(c / "outside" / "secret.ppm")), security=True),
        Case("merged folder linked outside", ["merge", "shards"],
             lambda c, t: _shards(c, lambda s: (s / "merged").symlink_to(_outside(c))), security=True),
        Case("lock file linked outside", train_again, lambda c, t: _link(c, t, ".attrobust.lock", False),
             security=True),
        Case("train.log linked outside", train_again, lambda c, t: _link(c, t, "train.log", False), security=True),
        Case(".hydra linked outside", train_again, lambda c, t: _link(c, t, ".hydra", True), security=True),
        Case("evaluate folder linked outside", evaluate, lambda c, t: _link(c, t, "evaluate", True), security=True),
        Case("class folder linked outside", ["train", *TINY, "dataset=folder", "dataset.path=d", "dataset.size=[8,8]"],
             lambda c, _: _linked_class(c), security=True),
        Case("cache entry with swapped tensors", ["train", *TINY, "dataset=folder", "dataset.path=d",
                                                  "dataset.size=[8,8]", "hydra.run.dir=second"],
             lambda c, _: _swapped_cache(c), expect="rebuilt"),
        Case("merge of a cut-short measures file", ["merge", "shards"],
             lambda c, t: _shards(c, lambda s: _cut_last_line(s / "1" / "accuracy.csv"))),
        Case("broken chunk manifest on resume", ["evaluate", "checkpoint=ckpt", *FAST_EVAL,
                                                 "eval.attribution_batch_size=1", "eval.baselines=[]",
                                                 "hydra.run.dir=ev"],
             lambda c, _: _killed_attack_chunks(c, lambda p: (p / "manifest.json").write_text("{broken"))),
    ]


def more_bad_settings() -> list[Case]:
    """Issue 25's tracebacks, crash, silent acceptances and usage dumps."""
    external = ["evaluate", "model=external", "dataset=mnist_mini", "eval.num_examples=4", "attributions=false",
                "attack.steps=1"]
    train = [
        ("override without a key", ["=3"]), ("optim group removed", ["~optim"]),
        ("nesterov without momentum", ["optim=sgd", "optim.nesterov=true", "optim.momentum=0"]),
        ("ig_steps 0 in training", ["reg=ig_norm", "reg.ig_steps=0"]), ("epochs 0", ["train.epochs=0"]),
        ("steps 0", ["train.epochs=null", "train.steps=0"]), ("one training image", ["train.num_examples=1"]),
        ("unknown top-level key", ["+foo=1"]), ("empty run folder name", ["hydra.run.dir="]),
        ("pgd training with 0 steps", ["reg=pgd", "reg.steps=0"]), ("art with 0 steps", ["reg=art", "reg.steps=0"]),
        ("dataset eps 5 (the earlier spelling)", ["dataset.eps=5"]),
        ("pixel_scale 0", ["model=rar_resnet", "model.pixel_scale=0"]),
        ("hkr on a network that is not 1-Lipschitz", ["reg=hkr"]), ("unknown flag", ["--epochs", "3"]),
    ]
    out = [Case(name, ["train", *TINY, *args]) for name, args in train]
    evaluate = [
        ("pgd with 0 steps", ["attack.steps=0"]), ("pgd_l2 with 0 steps", ["attack=pgd_l2", "attack.steps=0"]),
        ("attack eps 5", ["attack.eps=5"]), ("lens window larger than the image",
                                             ["eval.metrics=[{name:lens_recall,window:1001}]"]),
        ("max_sensitivity radius inf", ["eval.stability=[{name:max_sensitivity,radius:inf}]"]),
        ("certify_l2 inf", ["eval.certify_l2=inf"]),
    ]
    out += [Case(name, ["evaluate", "checkpoint=ckpt", *FAST_EVAL, *args]) for name, args in evaluate]
    out += [
        Case("npz labels of 10**9", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _npz(case / "d", labels=np.array([0, 1, 10**9] * 4))),
        Case("npz uint64 labels beyond int64", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _npz(case / "d", labels=np.array([0, 1, 2**63 + 5] * 4, dtype=np.uint64))),
        Case("gtsrb labels as strings", ["train", *TINY, "dataset=gtsrb", "dataset.num_classes=3", "paths.data=data"],
             lambda c, _: _gtsrb_official(c, string_labels=True)),
        Case("decompression bomb png", ["train", *TINY, "dataset=folder", "dataset.path=d", "dataset.size=[8,8]"],
             lambda c, _: _bomb_png(c / "d")),
        Case("external network without parameters", [*external, "model.source=usernet:empty"],
             lambda c, _: _user_module(c)),
        Case("external function that raises", [*external, "model.source=usernet:broken"],
             lambda c, _: _user_module(c)),
        Case("external weights with NaN", [*external, "model.source=usernet:nan_net"],
             lambda c, _: _user_module(c)),
        Case("no command", []), Case("misspelt command", ["trian"]), Case("report without a folder", ["report"]),
        Case("merge with two folders", ["merge", "a", "b"]), Case("list with an argument", ["list", "x"]),
    ]
    return out


def weak_messages() -> list[Case]:
    """Issue 25's weak messages: each line must name the key or file, where the value came from and the fix."""
    evaluate = ["evaluate", "checkpoint=ckpt", *FAST_EVAL]
    lipschitz_gradcam = ["model=lipschitz_cnn", "reg=attribution_distance", "reg.explainer=gradcam"]

    def edited(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
        return lambda case, trained: _edited_checkpoint(case, trained, change)

    return [
        Case("checkpoint threat eps of the wrong type", ["evaluate", "checkpoint=edited.pt", *FAST_EVAL],
             edited(lambda p: p["threat_cfg"].update(eps="abc")), mentions=("edited.pt stores", "threat.eps")),
        Case("checkpoint naming model external", ["evaluate", "checkpoint=edited.pt", *FAST_EVAL],
             edited(lambda p: p["model_cfg"].update(name="external")), mentions=("edited.pt stores", "'external'")),
        Case("checkpoint that is a device", ["evaluate", "checkpoint=/dev/null"],
             mentions=("/dev/null", "neither a run folder nor a file")),
        Case("dataset key without the dataset", [*evaluate, "dataset.eps=0.1"], mentions=("dataset=NAME",),
             never=("+dataset",)),
        Case("dataset key appended without the dataset", [*evaluate, "+dataset.eps=0.1"],
             mentions=("dataset=NAME",), never=("nterpolation",)),
        Case("dataset pgd steps negative", ["train", *TINY, "dataset.pgd.steps=-1"], mentions=("dataset.pgd",)),
        Case("smoothgrad wrapping ig with its settings", ["evaluate", "checkpoint=ckpt", *FAST_EVAL[:-1],
                                                          "explainer=smoothgrad", "explainer.wraps={name:ig,steps:2}",
                                                          "explainer.samples=2"], expect="works"),
        Case("figure_examples 0 in explain", ["explain", "checkpoint=ckpt", "figure_examples=0"],
             mentions=("figure_examples",), never=("num_examples must",)),
        Case("gradcam regulariser on a model without its layer", ["train", *TINY, *lipschitz_gradcam],
             mentions=("reg.explainer",), never=("explainer.layer",)),
        Case("reg weight infinite", ["train", *TINY, "reg=ig_norm", "reg.weight=inf"], mentions=("reg.weight",),
             never=("diverged",)),
        Case("reg curvature_weight NaN", ["train", *TINY, "reg=r2et", "reg.curvature_weight=nan"],
             mentions=("reg.curvature_weight",), never=("diverged",)),
        Case("reg extra_weight infinite", ["train", *TINY, "reg=attribution_distance", "reg.extra_distance=cosine",
                                           "reg.extra_weight=inf"], mentions=("reg.extra_weight",),
             never=("diverged",)),
        Case("diverged before any save", ["train", *TINY, "optim.lr=1e30"], mentions=("no state was saved",),
             never=("last.pt keeps",)),
        Case("npz of Python objects", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _object_npz(case / "d", case / "marker"), security=True, mentions=("d/train.npz",),
             never=("allow_pickle",)),
        Case("npz with NaN labels", ["train", *TINY, "dataset=npz", "dataset.path=d"],
             lambda case, _: _npz(case / "d", labels=np.array([0.0, 1.0, np.nan] * 4))),
        Case("shard whose images is a string", ["merge", "shards"],
             lambda c, t: _shards(c, lambda s: _edit_record(s / "1", images="0,1")),
             mentions=("shards/1/evaluation.json", "images")),
    ]


def _object_npz(folder: Path, marker: Path) -> None:
    """Splits whose `x` is an object array (a pickle: loading it with allow_pickle=True would run RunsCode)."""
    folder.mkdir(parents=True)
    x = np.empty(12, dtype=object)
    x[0] = RunsCode(str(marker))
    for split in ("train", "test"):
        np.savez(folder / f"{split}.npz", x=x, y=np.arange(12) % 3)


def _edit_record(shard: Path, **fields: object) -> None:
    import json

    record = json.loads((shard / "evaluation.json").read_text())
    (shard / "evaluation.json").write_text(json.dumps({**record, **fields}))


def attrobust(args: list[str], cwd: Path, code: Path | None, timeout_s: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if code is not None:
        env["PYTHONPATH"] = f"{code}{os.pathsep}{env.get('PYTHONPATH', '')}"
    try:
        return subprocess.run([sys.executable, "-m", "attrobust", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(args, -9, expired.stdout or "", f"timeout after {timeout_s} s")


def files_in(folder: Path) -> set[str]:
    """Files, links and folders under `folder` (an empty `outputs/` left behind counts)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def outside_state(folder: Path) -> dict[str, bytes]:
    outside = folder / "outside"
    return {str(p.relative_to(outside)): p.read_bytes() if p.is_file() else b"" for p in outside.rglob("*")}


def classify(case: Case, result: subprocess.CompletedProcess, folder: Path, before: set[str],
             outside_before: dict[str, bytes]) -> dict[str, object]:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if "Traceback" in result.stderr:
        outcome = "traceback"
    elif result.returncode == 0:
        rebuilt = case.expect == "rebuilt" and any("does not match its source files" in line for line in
                                                   (result.stderr + result.stdout).splitlines())
        outcome = ("listed" if case.expect == "listed" and any("sweep/b" in w for w in warnings) else
                   "rebuilt" if rebuilt else "works" if case.expect == "works" else "accepted")
    elif len(errors) == 1:
        weak = (any(text not in errors[0] for text in case.mentions) or any(text in errors[0] for text in case.never))
        outcome = "weak" if weak else "one line"
    else:
        outcome = "other"
    left = sorted(files_in(folder) - before - {"marker"})
    return {"case": case.name, "command": " ".join(case.args[:1] + [a for a in case.args[1:]
                                                                     if a not in TINY + FAST_EVAL]),
            "outcome": outcome, "expected": case.expect, "exit": result.returncode,
            "security_failure": case.security and ((folder / "marker").exists() or
                                                    outside_state(folder) != outside_before),
            "message": (errors[0] if errors else (warnings[0] if warnings else result.stderr.strip()[-200:]))[:300],
            "left_behind": " ".join(left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=None, help="a checkout to run instead of the installed one")
    parser.add_argument("--out", type=Path, default=Path("audit.csv"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        made = attrobust(["train", *TINY, "hydra.run.dir=ckpt"], base, options.code, options.timeout)
        if made.returncode != 0:
            raise SystemExit(f"could not train the checkpoint the cases use:\n{made.stderr}")
        rows = []
        for index, case in enumerate(c for c in cases() if options.only in c.name):
            folder = base / f"case{index:02d}"
            folder.mkdir()
            shutil.copytree(base / "ckpt", folder / "ckpt")
            if case.setup is not None:
                case.setup(folder, folder / "ckpt")
            before, outside_before = files_in(folder), outside_state(folder)
            start = time.monotonic()
            result = attrobust(case.args, folder, options.code, options.timeout)
            row = classify(case, result, folder, before, outside_before)
            row["seconds"] = round(time.monotonic() - start, 1)
            rows.append(row)
            print(f"{row['outcome']:>9}  {case.name}: {row['message'][:110]}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(options.out, index=False)
    counts = table["outcome"].value_counts().to_dict()
    silent = int(((table["outcome"] == "accepted") & (table["expected"] != "listed")).sum())
    print(f"\n{len(table)} cases: {counts}; silently accepted {silent}; security failures "
          f"{int(table['security_failure'].sum())}; written to {options.out}")


if __name__ == "__main__":
    main()
