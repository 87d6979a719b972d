"""Feed attrobust bad inputs, crafted files and environment faults, and count how each one ends.

Each case runs `python -m attrobust ...` in a fresh folder (a subprocess, as a user would) and is classified:
- `one line`: a non-zero exit with exactly one `error:` line and no traceback (what every case should give);
- `listed`: (report cases) exit 0 with the broken run named in a `warning:` line;
- `traceback`: a Python traceback reached the user;
- `accepted`: exit 0 for an input that makes the measurement impossible (a silent acceptance);
- `other`: anything else (no message, several error lines, a timeout).
Security cases also fail when their marker file appears (code ran from a data file or checkpoint).
Leftovers: the files the command left in its folder (what a failed start should not leave).

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
        "dataset.pgd.steps=2"]
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
    expect: str = "one line"                           # or "listed" (report)
    security: bool = False


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


def cases() -> list[Case]:
    train = [
        ("seed not a number", ["seed=abc"]), ("negative seed", ["seed=-1"]), ("device meta", ["device=meta"]),
        ("device mps", ["device=mps"]), ("device unknown", ["device=tpu"]),
        ("adam betas out of range", ["optim.betas=[2,0.5]"]), ("lr infinite", ["optim.lr=inf"]),
        ("lr negative", ["optim.lr=-1"]), ("sgd momentum 1", ["optim=sgd", "optim.momentum=1"]),
        ("std zero", ["dataset.std=[0]"]), ("eps infinite", ["dataset.eps=inf"]),
        ("eps negative", ["dataset.eps=-0.1"]),
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
    return out


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
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def classify(case: Case, result: subprocess.CompletedProcess, folder: Path, before: set[str]) -> dict[str, object]:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if "Traceback" in result.stderr:
        outcome = "traceback"
    elif result.returncode == 0:
        outcome = "listed" if case.expect == "listed" and any("sweep/b" in w for w in warnings) else "accepted"
    elif len(errors) == 1:
        outcome = "one line"
    else:
        outcome = "other"
    left = sorted(files_in(folder) - before - {"marker"})
    return {"case": case.name, "command": " ".join(case.args[:1] + [a for a in case.args[1:]
                                                                     if a not in TINY + FAST_EVAL]),
            "outcome": outcome, "expected": case.expect, "exit": result.returncode,
            "security_failure": case.security and (folder / "marker").exists(),
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
            before = files_in(folder)
            start = time.monotonic()
            result = attrobust(case.args, folder, options.code, options.timeout)
            row = classify(case, result, folder, before)
            row["seconds"] = round(time.monotonic() - start, 1)
            rows.append(row)
            print(f"{row['outcome']:>9}  {case.name}: {row['message'][:110]}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(options.out, index=False)
    counts = table["outcome"].value_counts().to_dict()
    silent = int(((table["outcome"] == "accepted") & (table["expected"] == "one line")).sum())
    print(f"\n{len(table)} cases: {counts}; silently accepted {silent}; security failures "
          f"{int(table['security_failure'].sum())}; written to {options.out}")


if __name__ == "__main__":
    main()
